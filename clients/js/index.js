// @ts-check
/**
 * The Line Auth BFF's browser client: a dependency-free ES module.
 *
 * It calls the BFF with the session cookie (`credentials: "include"`) and `X-CSRF: 1`, and
 * turns every problem+json answer into a `BffProblem` (a `NotSignedIn` for 401, which knows
 * where to sign in). The page never sees a token. Types: index.d.ts (from the OpenAPI document).
 *
 *   import { createClient } from "https://bff.example.no/client/line-auth-bff.js";
 *   const bff = createClient({ baseUrl: "https://bff.example.no", app: "shop" });
 */

const PROBLEM = "urn:line-auth-bff:problem:";

/** An error answer of the BFF (RFC 9457 problem+json), with its code. */
export class BffProblem extends Error {
  /**
   * @param {import("./api").Problem} problem
   */
  constructor(problem) {
    super(problem.detail || problem.title);
    this.name = "BffProblem";
    /** @type {import("./api").Problem} */
    this.problem = problem;
    /** @type {import("./api").ProblemCode} */
    this.code = /** @type {import("./api").ProblemCode} */ (problem.type.slice(PROBLEM.length));
    /** @type {number} */
    this.status = problem.status;
  }
}

/** 401: not signed in, or the session has ended. `loginUrl` starts a new login. */
export class NotSignedIn extends BffProblem {
  /**
   * @param {import("./api").Problem} problem
   * @param {string} loginUrl
   */
  constructor(problem, loginUrl) {
    super(problem);
    this.name = "NotSignedIn";
    /** @type {string} */
    this.loginUrl = loginUrl;
  }
}

/**
 * @param {import("./index").ClientOptions} options
 * @returns {import("./index").BffClient}
 */
export function createClient(options) {
  const base = options.baseUrl.replace(/\/+$/, "");
  const app = encodeURIComponent(options.app);
  const doFetch = options.fetch || globalThis.fetch.bind(globalThis);
  const here = () => (typeof location === "undefined" ? "" : location.href);

  /** @param {string} [returnTo] */
  const loginUrl = (returnTo) =>
    `${base}/auth/${app}/login?return_to=${encodeURIComponent(returnTo || here())}`;

  /**
   * @param {string} path
   * @param {RequestInit} [init]
   * @returns {Promise<Response>}
   */
  async function call(path, init = {}) {
    const response = await doFetch(`${base}${path}`, {
      ...init,
      credentials: "include",
      headers: { Accept: "application/json", ...(init.headers || {}), "X-CSRF": "1" },
    });
    if (response.ok) return response;
    const type = response.headers.get("content-type") || "";
    /** @type {import("./api").Problem} */
    const problem = type.startsWith("application/problem+json")
      ? await response.json()
      : { type: `${PROBLEM}internal`, title: response.statusText || "Error", status: response.status };
    if (response.status === 401) throw new NotSignedIn(problem, loginUrl());
    throw new BffProblem(problem);
  }

  /**
   * @template T
   * @param {string} path
   * @returns {Promise<T>}
   */
  const json = async (path) => (await call(path)).json();

  return {
    loginUrl,
    login(returnTo) {
      location.assign(loginUrl(returnTo));
    },
    session: () => json(`/api/${app}/session`),
    userInfo: () => json(`/api/${app}/user-info`),
    deviceInfo: () => json(`/api/${app}/device-info`),
    telenor: (path) => json(`/api/${app}/telenor/${path.replace(/^\/+/, "")}`),
    async logout() {
      await call(`/auth/${app}/logout`, { method: "POST" });
    },
  };
}

// The Line Auth BFF's browser client. Its data types are generated from the OpenAPI
// document (api.d.ts); what is here is the client's own surface.
import type { DeviceInfo, Problem, ProblemCode, SessionStatus, UserInfo } from "./api";

export type { DeviceInfo, Problem, ProblemCode, SessionStatus, UserInfo } from "./api";

export interface ClientOptions {
  /** The BFF's public URL, e.g. "https://bff.example.no". */
  baseUrl: string;
  /** The app id (BFF_APPS__{ID}__…, lower-case). */
  app: string;
  /** A fetch to use instead of the global one. */
  fetch?: typeof fetch;
}

/** An error answer of the BFF (RFC 9457 problem+json), with its code. */
export declare class BffProblem extends Error {
  constructor(problem: Problem);
  readonly problem: Problem;
  readonly code: ProblemCode;
  readonly status: number;
}

/** 401: not signed in, or the session ended. `loginUrl` starts a new login. */
export declare class NotSignedIn extends BffProblem {
  constructor(problem: Problem, loginUrl: string);
  readonly loginUrl: string;
}

export interface BffClient {
  /** The login URL that comes back to `returnTo` (default: this page). */
  loginUrl(returnTo?: string): string;
  /** Navigate to the login (a top-level navigation: Telenor's pages are no iframe). */
  login(returnTo?: string): void;
  /** Whether the browser is signed in to the app (never throws NotSignedIn). */
  session(): Promise<SessionStatus>;
  /** Mobile User Info. Throws NotSignedIn (401) or BffProblem. */
  userInfo(): Promise<UserInfo>;
  /** Mobile Device Info. Throws NotSignedIn (401) or BffProblem. */
  deviceInfo(): Promise<DeviceInfo>;
  /** An allow-listed Telenor API path, e.g. "user-info/v1/users". */
  telenor<T = unknown>(path: string): Promise<T>;
  /** End the session (and the cookie). */
  logout(): Promise<void>;
}

export declare function createClient(options: ClientOptions): BffClient;

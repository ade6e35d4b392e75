// Type-checked with the client (tsc --noEmit in the suite): what a front end writes.
import { BffProblem, NotSignedIn, createClient } from "./index.js";
import type { ProblemCode, UserInfo } from "./index.js";

const bff = createClient({ baseUrl: "https://bff.example.no", app: "shop" });

export async function fillForm(): Promise<string> {
  const status = await bff.session();
  if (!status.authenticated) {
    bff.login();
    return "";
  }
  try {
    const user: UserInfo = await bff.userInfo();
    const device = await bff.deviceInfo();
    return `${user.name?.givenName ?? ""} ${device.model ?? ""}`;
  } catch (error) {
    if (error instanceof NotSignedIn) location.assign(error.loginUrl);
    if (error instanceof BffProblem) {
      const code: ProblemCode = error.code;
      return code === "rate_limited" ? "try later" : error.problem.title;
    }
    throw error;
  }
}

// tokens.js: what the browser client reads of a JWT (it never verifies
// one: the server does). Plain ES module, no dependencies.

/** The `exp` claim (seconds since the epoch) of a JWT, or null. */
export function tokenExp(token) {
  if (typeof token !== "string") return null;
  const part = token.split(".")[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, "+").replace(/_/g, "/");
    const json = typeof atob === "function" ? atob(b64) : Buffer.from(b64, "base64").toString();
    const exp = JSON.parse(json).exp;
    return Number.isInteger(exp) ? exp : null;
  } catch (_) {
    return null;
  }
}

/**
 * How long to wait (ms) before refreshing a token that expires at `exp`
 * (seconds): `marginMs` before it, or half of what is left when that is
 * less; never negative.
 */
export function refreshDelay(exp, nowMs, marginMs = 30000) {
  const left = exp * 1000 - nowMs;
  return Math.max(0, left > 2 * marginMs ? left - marginMs : left / 2);
}

// What every fuzz app answers: `<id> <bytes> <sha256 of the body>`, as the body and as the
// `x-echo` header (a HEAD answer has no body), so the client checks each answer byte-exact.
import { createHash } from 'node:crypto';

export const BODY_LIMIT = 4 * 1024 * 1024;
/** Behind a proxy's keep-alive pool the app must outwait the proxy's idle timeout (nginx: 60 s). */
export const KEEP_ALIVE_TIMEOUT = 65_000;

/** The echo line for request `id` (the last path segment) whose body was `bytes` long with digest `sha`. */
export const echoLine = (url, bytes, sha) => `${url.split('/').pop()} ${bytes} ${sha}`;

/** Reads a request body stream to its end: its length and sha256. */
export async function digest(stream) {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of stream) {
    bytes += chunk.length;
    hash.update(chunk);
  }
  return { bytes, sha: hash.digest('hex') };
}

/** One JSON line on stdout: the runner waits on `listening`. */
export const emit = (event, fields = {}) => process.stdout.write(`${JSON.stringify({ event, pid: process.pid, ...fields })}\n`);

/** Settings every app takes from the runner. */
export const settings = { port: Number(process.env.PORT ?? 0), pidFile: process.env.PID_FILE || undefined };

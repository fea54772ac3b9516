// A stand-in for systemd's notify socket (NOTIFY_SOCKET): test/helpers/notify-socket.py binds it
// and reports every message with the pid the kernel says sent it.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { followJsonEvents } from './process.mjs';

const RECEIVER = fileURLToPath(new URL('./notify-socket.py', import.meta.url));

/**
 * Starts the receiver; resolves { path, messages, waitForMessage(match, { after }) } once it
 * listens. `messages` are `{ pid, fields, at }`; `has(field)` matches a message with that field.
 */
export async function startNotifySocket(t) {
  const dir = mkdtempSync(join(tmpdir(), 'grace-notify-'));
  const path = join(dir, 'notify');
  const child = spawn('python3', [RECEIVER, path], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output = followJsonEvents(child);
  t.after(() => {
    child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  await output.waitForEvent((e) => e.listening === path);
  // systemd-notify's barrier (BARRIER=1 with a pipe, sent as itself) is the protocol's, not a message.
  const isMessage = (e) => Array.isArray(e.fields) && !(e.fields.length === 1 && e.fields[0] === 'BARRIER=1');
  const messages = () => output.events.filter(isMessage);
  return {
    path,
    get messages() {
      return messages();
    },
    /** `after` counts messages, as `messages.length` does. */
    waitForMessage: (match, { after = 0, timeout } = {}) => {
      const skip = new Set(messages().slice(0, after));
      return output.waitForEvent((e) => isMessage(e) && !skip.has(e) && match(e), { timeout });
    },
  };
}

/** A predicate: the message carries every one of `fields` (exact `KEY=value`, or a RegExp). */
export const carrying =
  (...fields) =>
  (message) =>
    fields.every((f) => message.fields.some((have) => (f instanceof RegExp ? f.test(have) : have === f)));

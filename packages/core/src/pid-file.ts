/**
 * The PID file names the process that currently serves. It is written atomically (a fresh
 * temp file created with O_EXCL, then renamed over the target, so a reader never sees a
 * partial file and a planted symlink is replaced, never followed) and removed only by the
 * process whose pid it holds.
 */
import { closeSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { parsePositiveInteger } from './protocol.js';

/** Writes `pid` to `file` atomically with mode 0644. */
export function writePidFile(file: string, pid: number = process.pid): void {
  const temp = join(dirname(file), `.${basename(file)}.${pid}.${Date.now()}.tmp`);
  const fd = openSync(temp, 'wx', 0o644);
  try {
    writeSync(fd, `${pid}\n`);
  } finally {
    closeSync(fd);
  }
  try {
    renameSync(temp, file);
  } catch (error) {
    unlinkSync(temp);
    throw error;
  }
}

/** Reads the pid in `file`; undefined when the file is missing or holds no pid. */
export function readPidFile(file: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
  const trimmed = text.trim();
  return parsePositiveInteger(trimmed);
}

/** Removes `file` if it still holds `pid`; returns whether it did. */
export function removePidFile(file: string, pid: number = process.pid): boolean {
  if (readPidFile(file) !== pid) return false;
  try {
    unlinkSync(file);
    return true;
  } catch {
    return false;
  }
}

// The kernel's TCP table (/proc/net/tcp and tcp6, Linux), for tests that check from outside
// which connections exist, in which state, and which process holds them (by socket inode).
import { readFileSync } from 'node:fs';

/** State codes of the table: '01' ESTABLISHED, '08' CLOSE_WAIT, '0A' LISTEN. */
export const TCP_STATE = { established: '01', closeWait: '08', listen: '0A' };

/** Every row of the table: { localPort, remotePort, state, inode }. */
export function tcpTable() {
  const rows = [];
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue; // no IPv6 on this machine
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      if (fields.length < 10) continue;
      const port = (address) => Number.parseInt(address.split(':').at(-1), 16);
      rows.push({ localPort: port(fields[1]), remotePort: port(fields[2]), state: fields[3], inode: fields[9] });
    }
  }
  return rows;
}

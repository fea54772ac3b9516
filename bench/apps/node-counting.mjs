// The bare node:http app (node.mjs) with grace-restart's answer counting alone (issue #28): the
// two diagnostics-channel subscribers every grace-restart process now has, and nothing else, to
// measure what counting costs per request. As in core, each message is checked against the
// process's listeners (one here: the first server seen) with `some`.
import { AnswerCounter } from '../../packages/core/dist/answer-counts.js';

const listeners = [];
const ours = (server) => {
  if (listeners.length === 0) listeners.push({ server });
  return listeners.some((l) => l.server === server);
};
new AnswerCounter(ours).start();
await import('./node.mjs');

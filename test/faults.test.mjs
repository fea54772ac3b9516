// The fault suite's short form as node:test tests: one test per scenario of
// test/faults/scenarios/ (the same modules `node test/faults/run.mjs` runs).
// Scenarios with `knownDefect` reproduce a defect that is not fixed yet: they run as
// `todo` (reported, not failing the suite); drop the field when the fix lands.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runScenario } from './faults/lib.mjs';
import { allScenarios } from './faults/scenarios/index.mjs';

for (const scenario of allScenarios) {
  const options = { timeout: 120_000, ...(scenario.knownDefect ? { todo: `known defect: ${scenario.knownDefect}` } : {}) };
  test(`faults: ${scenario.name}`, options, async () => {
    const row = await runScenario(scenario.name, scenario.run, { long: false });
    assert.equal(row.verdict, 'pass', `${row.verdict}\n(requests ${row.requests}, failed ${row.failed}; ${row.notes})`);
  });
}

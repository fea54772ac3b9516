// Every scenario of the fault suite, in the order the runner and the tests run them.
import { scenarios as soak } from './soak.mjs';
import { scenarios as signals } from './signals.mjs';
import { scenarios as successor } from './successor.mjs';
import { scenarios as parent } from './parent.mjs';
import { scenarios as connections } from './connections.mjs';
import { scenarios as hostile } from './hostile.mjs';

export const allScenarios = [...soak, ...signals, ...successor, ...parent, ...connections, ...hostile];

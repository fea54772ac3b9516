// @grace-restart/express in a real process: signals and upgrades (see test/helpers/adapter-fixture.mjs).
import { fileURLToPath } from 'node:url';
import { testAdapterFixture } from '../../../test/helpers/adapter-fixture.mjs';

const fixture = fileURLToPath(new URL('./fixtures/app.mjs', import.meta.url));
testAdapterFixture({ framework: 'express', fixture });
testAdapterFixture({ framework: 'express 4', fixture, env: { FRAMEWORK_MODULE: 'express4' } });

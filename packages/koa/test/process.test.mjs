// @grace-restart/koa in a real process: signals and upgrades (see test/helpers/adapter-fixture.mjs).
import { fileURLToPath } from 'node:url';
import { testAdapterFixture } from '../../../test/helpers/adapter-fixture.mjs';

const fixture = fileURLToPath(new URL('./fixtures/app.mjs', import.meta.url));
testAdapterFixture({ framework: 'koa', fixture });
testAdapterFixture({ framework: 'koa 2', fixture, env: { FRAMEWORK_MODULE: 'koa2' } });

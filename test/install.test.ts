/**
 * reslens as a fresh clone gets it: `npm ci` runs the package's own `prepare` script, which must
 * build dist/, so that the `reslens` bin that `npx reslens` runs exists and runs by itself: npx
 * executes the file, so it needs its shebang and the executable bit, which tsc does not set (the
 * build script does). npm test builds first, so dist/ is there.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { version: string; bin: Record<string, string>; scripts: Record<string, string> };

test('npm ci builds dist/ (prepare runs the build)', () => {
  assert.match(pkg.scripts.prepare ?? '', /\bnpm run -s build\b/, 'package.json needs "prepare": "npm run -s build", or a fresh clone has no dist/ and no reslens command');
  assert.match(pkg.scripts.build ?? '', /\btsc\b/);
});

test('the reslens bin runs as a program, as npx runs it', () => {
  const bin = path.resolve(pkg.bin.reslens ?? '');
  assert.equal(readFileSync(bin, 'utf8').split('\n')[0], '#!/usr/bin/env node');
  assert.ok(statSync(bin).mode & 0o100, `${bin} is not executable`);
  const r = spawnSync(bin, ['--version'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), pkg.version);
});

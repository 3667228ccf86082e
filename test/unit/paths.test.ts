import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  allows,
  entriesFromGlobs,
  generalisePaths,
  isUnder,
  looksRandom,
  normalisePath,
} from '../../agent/paths.js';

test('random-looking segments are recognised, ordinary names are not', () => {
  for (const s of [
    '1234',
    'tmpk3j2_x1a',
    'tmp.Xa9kQ2',
    'a1b2c3d4e5f6a7b8',
    'Ab3dE9xQ',
    '0f8fad5b-d9cb-469f-a165-70867728950e',
  ])
    assert.ok(looksRandom(s), s);
  for (const s of [
    'etc',
    'libc.so.6',
    'python3.11',
    'sha256sum',
    'x86_64-linux-gnu',
    'ld-linux-x86-64.so.2',
    'busybox',
    'cpu0',
  ])
    assert.ok(!looksRandom(s), s);
});

test('a temporary name cuts the path to the directory above it', () => {
  const entries = generalisePaths(['/tmp/tmpk3j2_x1a/data.json', '/etc/hosts']);
  assert.deepEqual(entries, [
    { path: '/etc/hosts', subtree: false, reason: 'learned' },
    { path: '/tmp', subtree: true, reason: 'random-segment' },
  ]);
  assert.ok(allows(entries, '/tmp/tmpZZ99aa_q/data.json'), 'next run gets another temp name');
  assert.ok(!allows(entries, '/etc/shadow'));
});

test('process ids under /proc become the /proc subtree', () => {
  const entries = generalisePaths(['/proc/4242/status', '/proc/4242/maps']);
  assert.deepEqual(entries, [{ path: '/proc', subtree: true, reason: 'random-segment' }]);
});

test('a directory past the fan-out threshold is allowed as a whole, smaller ones stay exact', () => {
  const modules = Array.from(
    { length: 8 },
    (_, i) => `/usr/lib/python3.11/mod${String.fromCharCode(97 + i)}.py`,
  );
  const entries = generalisePaths([...modules, '/usr/share/zoneinfo/UTC', '/usr/share/zoneinfo/CET']);
  assert.ok(entries.some((e) => e.path === '/usr/lib/python3.11' && e.subtree && e.reason === 'fan-out'));
  assert.ok(allows(entries, '/usr/lib/python3.11/json/decoder.py'));
  assert.ok(allows(entries, '/usr/share/zoneinfo/UTC'));
  assert.ok(!allows(entries, '/usr/share/zoneinfo/Asia/Tokyo'));
  assert.equal(
    entries.filter((e) => e.path.startsWith('/usr/lib/python3.11/')).length,
    0,
    'covered entries dropped',
  );
});

test('fan-out never widens the protected directories', () => {
  const etc = Array.from({ length: 20 }, (_, i) => `/etc/file${String.fromCharCode(97 + i)}`);
  const entries = generalisePaths(etc);
  assert.equal(entries.length, 20);
  assert.ok(entries.every((e) => !e.subtree));
  assert.ok(!allows(entries, '/etc/shadow'));
});

test('written files allow their directory (they get a new inode when recreated), except protected ones', () => {
  const entries = generalisePaths([
    { path: '/var/log/app/app.log', write: true },
    { path: '/etc/app.conf', write: true },
  ]);
  assert.deepEqual(entries, [
    { path: '/etc/app.conf', subtree: false, reason: 'learned' },
    { path: '/var/log/app', subtree: true, reason: 'written' },
  ]);
});

test('bad paths are refused clearly', () => {
  assert.throws(() => normalisePath('etc/passwd'), /absolute/);
  assert.throws(() => generalisePaths(['/etc/../root/.ssh']), /\.\./);
  assert.throws(() => generalisePaths(['/a'], { fanOutThreshold: 1 }), /fanOutThreshold/);
  assert.throws(() => entriesFromGlobs(['/etc/*.conf']), /trailing/);
});

test('policy globs: a trailing /** is a subtree', () => {
  assert.deepEqual(entriesFromGlobs(['/data/**', '/etc/app.conf']), [
    { path: '/data', subtree: true, reason: 'rule' },
    { path: '/etc/app.conf', subtree: false, reason: 'rule' },
  ]);
});

const segment = fc.stringMatching(/^[a-zA-Z0-9_.-]{1,12}$/).filter((s) => s !== '.' && s !== '..');
const pathArb = fc.array(segment, { minLength: 1, maxLength: 6 }).map((parts) => '/' + parts.join('/'));

test('property: every learned path stays allowed, no entry is covered by another, output is stable', () => {
  fc.assert(
    fc.property(fc.array(pathArb, { maxLength: 60 }), fc.integer({ min: 2, max: 10 }), (paths, threshold) => {
      const entries = generalisePaths(paths, { fanOutThreshold: threshold });
      for (const p of paths) assert.ok(allows(entries, p), `${p} lost`);
      for (const a of entries)
        for (const b of entries)
          if (a !== b && b.subtree) assert.ok(!isUnder(a.path, b.path), `${a.path} covered by ${b.path}`);
      const again = generalisePaths(
        entries.map((e) => e.path),
        { fanOutThreshold: threshold },
      );
      for (const e of entries) assert.ok(allows(again, e.path));
    }),
    { numRuns: 300 },
  );
});

/**
 * reslens report and merge, as a user runs them (dist/cli.js): the schema file matches the zod
 * definitions; every command's --json output validates against its part of the schema; a
 * report is reproducible from its seeds; a run killed at a random moment and resumed, and four
 * shards merged, give the uninterrupted run's report (timings aside), the exact part included;
 * the HTML page draws its seven plots in headless Chromium.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Engine } from '../src/engine/engine.js';
import { openNetwork } from '../src/engine/network.js';
import { Runtime } from '../src/engine/session.js';
import { openDataset } from '../src/loader/data/index.js';
import { encodeModel } from '../src/loader/proto.js';
import { Random } from '../src/random.js';
import { captions, COLORS, renderHtml } from '../src/report/html.js';
import { ExactDoc, GradientsDoc, InspectDoc, LesionDoc, PathsDoc, Report, schemaText, withoutTimings } from '../src/report/schema.js';
import { intactProgram } from '../src/surgery/split.js';
import { buildNet } from './helpers/build.js';
import { writeNpy } from './helpers/npy.js';

const CLI = path.resolve('dist/cli.js');
const dir = mkdtempSync(path.join(os.tmpdir(), 'reslens-report-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const model = path.join(dir, 'res.onnx');
const plain = path.join(dir, 'plain.onnx');
const xs = path.join(dir, 'x.npy');
const N = 400;
const meta = [
  { key: 'reslens.input_size', value: '8,8' },
  { key: 'reslens.mean', value: '0.5' },
  { key: 'reslens.std', value: '0.25' },
];

/** A residual net (two stages, one downsampling block), a plain one, and data labelled by the residual net (10% noise). */
before(async () => {
  const m = buildNet({ blocks: [{ cout: 4 }, { cout: 4 }, { cout: 4 }, { cout: 8, stride: 2 }, { cout: 8 }, { cout: 8 }], size: 8, seed: 5 });
  m.metadataProps = meta;
  writeFileSync(model, encodeModel(m));
  const p = buildNet({ blocks: [{ cout: 4, plain: true }, { cout: 4, plain: true }, { cout: 4, plain: true }, { cout: 8, stride: 2, plain: true }, { cout: 8, plain: true }], size: 8, seed: 6 });
  p.metadataProps = meta;
  writeFileSync(plain, encodeModel(p));
  const r = new Random(3);
  writeNpy(xs, '|u1', [N, 8, 8], Uint8Array.from({ length: N * 64 }, () => r.int(256)));
  writeNpy(path.join(dir, 'y.npy'), '|u1', [N], new Uint8Array(N));
  const rt = new Runtime({ device: 'cpu', threads: 1 });
  const labels = new Uint8Array(N);
  try {
    const net = await openNetwork(rt, model);
    const engine = new Engine(rt, net);
    const data = await openDataset(xs, { preprocess: { mean: [0.5], std: [0.25], size: [8, 8], channels: 1 } });
    for await (const b of data.batches(100)) {
      const out = (await engine.logits(intactProgram(6), { data: b.images, dims: [b.n, 1, 8, 8] })).data as Float32Array;
      b.indices.forEach((i, j) => {
        const row = Array.from(out.subarray(j * 10, j * 10 + 10));
        labels[i] = r.next() < 0.1 ? r.int(10) : row.indexOf(Math.max(...row));
      });
    }
    await data.close();
  } finally {
    await rt.close();
  }
  writeNpy(path.join(dir, 'y.npy'), '|u1', [N], labels);
});

function run(...args: string[]) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, NO_COLOR: '1' } });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
const json = (file: string) => JSON.parse(readFileSync(file, 'utf8'));
const CPU = ['--device', 'cpu', '--threads', '1'];
/** Every run of the same report uses these options (the batch size is recorded in the config). */
const REPORT = [model, '--data', xs, ...CPU, '--k', '1,2,3', '--samples', '4', '--swaps', '3', '--gradient-samples', '6', '--batch', '4', '--exact', '--exact-batch', '16', '--compare', plain];
const NO_COMPARE = REPORT.slice(0, -2);

// ------------------------------------------------------------------ JSON Schema

/** Just enough of JSON Schema 2020-12 for the keywords the generated schema uses. */
function validate(schema: any, value: unknown, root: any = schema, at = '$'): string[] {
  if (schema.$ref) return validate(root.$defs[schema.$ref.replace('#/$defs/', '')], value, root, at);
  if (schema.anyOf) {
    const ok = schema.anyOf.some((s: any) => validate(s, value, root, at).length === 0);
    return ok ? [] : [`${at}: matches none of anyOf`];
  }
  const errs: string[] = [];
  if ('const' in schema && value !== schema.const) errs.push(`${at}: not ${JSON.stringify(schema.const)}`);
  if (schema.enum && !schema.enum.includes(value)) errs.push(`${at}: ${JSON.stringify(value)} not in enum`);
  const t = schema.type;
  const typeOk = (tt: string) =>
    tt === 'object' ? typeof value === 'object' && value !== null && !Array.isArray(value)
      : tt === 'array' ? Array.isArray(value)
        : tt === 'integer' ? Number.isInteger(value)
          : tt === 'null' ? value === null
            : typeof value === tt;
  if (t && !(Array.isArray(t) ? t.some(typeOk) : typeOk(t))) return [`${at}: expected ${t}, got ${JSON.stringify(value)?.slice(0, 40)}`];
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) errs.push(`${at}: below ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errs.push(`${at}: above ${schema.maximum}`);
    if (schema.exclusiveMinimum !== undefined && value <= schema.exclusiveMinimum) errs.push(`${at}: not above ${schema.exclusiveMinimum}`);
  }
  if (Array.isArray(value) && schema.items) value.forEach((v, i) => errs.push(...validate(schema.items, v, root, `${at}[${i}]`)));
  if (t === 'object' && value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    for (const k of schema.required ?? []) if (!(k in o)) errs.push(`${at}: missing ${k}`);
    for (const [k, v] of Object.entries(o)) {
      if (schema.properties?.[k]) errs.push(...validate(schema.properties[k], v, root, `${at}.${k}`));
      else if (schema.additionalProperties === false) errs.push(`${at}: unexpected ${k}`);
      else if (typeof schema.additionalProperties === 'object') errs.push(...validate(schema.additionalProperties, v, root, `${at}.${k}`));
    }
  }
  return errs;
}

const committed = JSON.parse(readFileSync('schemas/report.schema.json', 'utf8'));
type Part = 'Inspect' | 'Lesion' | 'Paths' | 'Gradients' | 'Exact';
function conforms(part: Part | 'Report', doc: unknown) {
  const zodSchema = { Inspect: InspectDoc, Lesion: LesionDoc, Paths: PathsDoc, Gradients: GradientsDoc, Exact: ExactDoc, Report }[part];
  const z = zodSchema.safeParse(doc);
  assert.ok(z.success, `${part} (zod): ${z.success ? '' : JSON.stringify(z.error.issues.slice(0, 3))}`);
  const errs = validate(part === 'Report' ? committed : committed.$defs[part], doc, committed);
  assert.deepEqual(errs.slice(0, 5), [], `${part} (schemas/report.schema.json)`);
}

test('schemas/report.schema.json is what scripts/gen-schema.ts makes of the zod definitions', () => {
  assert.equal(readFileSync('schemas/report.schema.json', 'utf8'), schemaText(), 'the committed schema is stale: run node --import tsx scripts/gen-schema.ts');
});

test("every command's --json output is its part of the report schema", () => {
  const outs: [string, Part, string[]][] = [
    ['inspect', 'Inspect', ['inspect', model, '--json']],
    ['inspect plain', 'Inspect', ['inspect', plain, '--json']],
    ['lesion', 'Lesion', ['lesion', model, '--data', xs, '--limit', '100', ...CPU, '--k', '1,2', '--samples', '2', '--reorder', '--swaps', '2', '--delete', '1,2', '--json']],
    ['lesion plain', 'Lesion', ['lesion', plain, '--data', xs, '--limit', '100', ...CPU, '--k', '2', '--samples', '2', '--json']],
    ['paths', 'Paths', ['paths', model, '--json']],
    ['paths --blocks', 'Paths', ['paths', '--blocks', '54', '--pL', '0.5', '--range', '19-35', '--json']],
    ['gradients', 'Gradients', ['gradients', model, '--data', xs, '--limit', '100', ...CPU, '--samples', '2', '--json']],
    ['gradients --exact', 'Exact', ['gradients', model, '--exact', '--data', xs, '--limit', '100', ...CPU, '--json']],
    ['gradients --exact --samples', 'Exact', ['gradients', model, '--exact', '--samples', '2', '--data', xs, '--limit', '100', ...CPU, '--json']],
  ];
  const fixture = path.resolve('fixtures/models/resnet20.onnx');
  if (existsSync(fixture)) {
    outs.push(['inspect resnet20', 'Inspect', ['inspect', fixture, '--json']]);
    outs.push(['lesion resnet20', 'Lesion', ['lesion', fixture, '--limit', '100', ...CPU, '--k', '1', '--samples', '2', '--json']]);
  }
  for (const [what, part, args] of outs) {
    const r = run(...args);
    assert.equal(r.code, 0, `${what}: ${r.err}`);
    conforms(part, JSON.parse(r.out));
  }
});

// ------------------------------------------------------------------ the reference report

const reference = path.join(dir, 'ref.json');
const referenceHtml = path.join(dir, 'ref.html');
let referenceSeconds = 3;

test('report: one document that validates, whose parts are the commands\' outputs, reproducible from its seeds', () => {
  const t0 = Date.now();
  const r = run('report', ...REPORT, '-o', reference, '--html', referenceHtml);
  referenceSeconds = (Date.now() - t0) / 1000;
  assert.equal(r.code, 0, r.err);
  assert.ok(!existsSync(`${reference}.partial`), 'the progress file is removed at the end');
  assert.match(r.out, /baseline error/);
  const doc = json(reference);
  conforms('Report', doc);
  assert.equal(doc.schemaVersion, 1);
  assert.equal(doc.reslens, JSON.parse(readFileSync('package.json', 'utf8')).version);
  assert.deepEqual(doc.seeds, { lesion: 0, gradients: 1 });
  assert.equal(doc.model.metadata['reslens.input_size'], '8,8');
  assert.equal(doc.data.size, N);
  for (const p of ['inspect', 'lesion', 'reorder', 'paths', 'gradients', 'exact', 'compare']) assert.ok(doc.timings.parts[p] >= 0, `seconds of ${p}`);
  assert.equal(doc.exact.exact.images, N);
  assert.equal(doc.exact.exact.batches, Math.ceil(N / 16));
  assert.ok(doc.exact.exact.identityError < 1e-5, `identity error ${doc.exact.exact.identityError}`);
  assert.ok(doc.lesion.single.some((s: { error: number }) => s.error !== doc.lesion.baseline.error), 'deleting blocks changes the error');

  // Each part is what the command writes with the same options (timings aside).
  const same = (part: string, args: string[]) => {
    const c = run(...args);
    assert.equal(c.code, 0, c.err);
    assert.deepEqual(withoutTimings({ [part]: doc[part] })[part], withoutTimings({ [part]: JSON.parse(c.out) })[part], part);
  };
  same('inspect', ['inspect', model, '--json']);
  same('paths', ['paths', model, '--json']);
  same('lesion', ['lesion', model, '--data', xs, ...CPU, '--batch', '4', '--k', '1,2,3', '--samples', '4', '--reorder', '--swaps', '3', '--json']);
  same('compare', ['lesion', plain, '--data', xs, ...CPU, '--batch', '4', '--k', '1,2,3', '--samples', '4', '--json']);
  same('gradients', ['gradients', model, '--data', xs, ...CPU, '--samples', '6', '--json']);
  same('exact', ['gradients', model, '--exact', '--data', xs, ...CPU, '--batch', '16', '--json']);

  // The same seeds give the same measurements; another seed other subsets.
  const again = path.join(dir, 'again.json');
  assert.equal(run('report', ...REPORT, '-o', again).code, 0);
  assert.deepEqual(withoutTimings(json(again)), withoutTimings(doc));
  const other = path.join(dir, 'other.json');
  assert.equal(run('report', ...NO_COMPARE, '--seed', '9', '--gradient-seed', '9', '--no-inspect', '--no-paths', '--no-reorder', '-o', other).code, 0);
  const o = json(other);
  assert.notDeepEqual(o.lesion.k, doc.lesion.k);
  assert.notDeepEqual(o.gradients.batches, doc.gradients.batches);
  assert.equal(o.inspect, null);
  assert.equal(o.paths, null);
  assert.equal(o.compare, null);
  assert.deepEqual(o.lesion.reorder, []);
  assert.equal(o.timings.parts.inspect, null);

  // An existing report is not replaced without --force.
  const r2 = run('report', ...REPORT, '-o', reference);
  assert.equal(r2.code, 2);
  assert.match(r2.err, /already exists; pass --force/);
});

test('report killed at random moments (SIGKILL) and resumed equals the uninterrupted report', async (t) => {
  assert.ok(existsSync(reference), 'needs the reference report');
  const out = path.join(dir, 'killed.json');
  const partial = `${out}.partial`;
  let resumedWithProgress = 0;
  for (let attempt = 0; attempt < 2; attempt++) {
    // Anywhere from start-up to near the end of an uninterrupted run.
    const delay = 200 + Math.random() * Math.max(500, referenceSeconds * 1000 - 300);
    const hadProgress = existsSync(partial);
    const child = spawn(process.execPath, [CLI, 'report', ...REPORT, '-o', out, '--resume'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    child.stderr.on('data', (d) => (err += d));
    const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
    const timer = setTimeout(() => child.kill('SIGKILL'), delay);
    const code = await exited;
    clearTimeout(timer);
    t.diagnostic(`attempt ${attempt}: killed after ${delay.toFixed(0)} ms: exit ${code}, progress file ${existsSync(partial) ? 'kept' : 'absent'}`);
    if (code === 0) {
      if (hadProgress) {
        assert.match(err, /resuming/, 'a second run picks up the progress file');
        resumedWithProgress++;
      }
      break;
    }
  }
  if (!existsSync(out)) {
    const hadProgress = existsSync(partial);
    const r = run('report', ...REPORT, '-o', out, '--resume');
    assert.equal(r.code, 0, r.err);
    if (hadProgress) {
      assert.match(r.err, /resuming/);
      resumedWithProgress++;
    }
  }
  t.diagnostic(`runs that resumed from a progress file: ${resumedWithProgress}`);
  assert.ok(!existsSync(partial));
  assert.deepEqual(withoutTimings(json(out)), withoutTimings(json(reference)));
  // A retried job: --resume on the finished output of the same options does nothing.
  const before = readFileSync(out, 'utf8');
  const again = run('report', ...REPORT, '-o', out, '--resume');
  assert.equal(again.code, 0, again.err);
  assert.match(again.err, /already finished/);
  assert.equal(readFileSync(out, 'utf8'), before);
  const otherSeed = run('report', ...REPORT, '--seed', '3', '-o', out, '--resume');
  assert.equal(otherSeed.code, 2);
  assert.match(otherSeed.err, /already exists/);
});

test('report --exact killed after some of its batches and resumed equals the uninterrupted run', async () => {
  const ONLY_EXACT = [model, '--data', xs, ...CPU, '--no-inspect', '--no-lesion', '--no-reorder', '--no-paths', '--no-gradients', '--exact', '--exact-batch', '8'];
  const whole = path.join(dir, 'exact-whole.json');
  const w = run('report', ...ONLY_EXACT, '-o', whole);
  assert.equal(w.code, 0, w.err);
  const total = Math.ceil(N / 8);
  assert.equal(json(whole).exact.exact.batches, total);
  const out = path.join(dir, 'exact-killed.json');
  const partial = `${out}.partial`;
  const child = spawn(process.execPath, [CLI, 'report', ...ONLY_EXACT, '--progress', 'json', '-o', out], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  // Killed once the progress says two exact batches are done, however loaded the machine is.
  const t0 = Date.now();
  while (!/"phase":"exact","done":([2-9]|\d\d)/.test(err) && Date.now() - t0 < 120000) await new Promise((res) => setTimeout(res, 20));
  child.kill('SIGKILL');
  await exited;
  const kept = JSON.parse(readFileSync(partial, 'utf8')).parts.exact.finished.length;
  assert.ok(kept >= 2 && kept < total, `the progress file holds ${kept} of ${total} batches`);
  const r = run('report', ...ONLY_EXACT, '-o', out, '--resume');
  assert.equal(r.code, 0, r.err);
  assert.match(r.err, new RegExp(`exact: resuming with ${kept} of ${total} batches done`));
  assert.deepEqual(withoutTimings(json(out)), withoutTimings(json(whole)));
  // --memory reaches the exact part: slices of one image, said once, the same numbers up to
  // float32 rounding of the loss gradient's mean (slices of 6 images divide by 6).
  const small = path.join(dir, 'exact-small.json');
  const m = run('report', ...ONLY_EXACT, '--memory', '1M', '-o', small);
  assert.equal(m.code, 0, m.err);
  assert.equal(m.err.match(/^exact: 1 image a slice \(\d+ rows\) on 1 lane instead of \d+ images for the memory budget of 1 MiB from --memory/gm)?.length, 1, m.err);
  const [a, b] = [json(whole).exact.exact, json(small).exact.exact];
  assert.deepEqual(b.effectiveRange, a.effectiveRange);
  a.perLength.forEach((p: { norm: number; share: number }, k: number) => {
    assert.ok(Math.abs(b.perLength[k].norm - p.norm) <= 1e-6 * p.norm, `|G_${k}| ${b.perLength[k].norm} against ${p.norm}`);
    assert.ok(Math.abs(b.perLength[k].share - p.share) <= 1e-6, `share ${k} ${b.perLength[k].share} against ${p.share}`);
  });
});

test('resume refuses other options and bad files; a progress file is not silently replaced', () => {
  const out = path.join(dir, 'stopped.json');
  const partial = `${out}.partial`;
  writeFileSync(partial, JSON.stringify({ schemaVersion: 1, kind: 'nonsense' }));
  const bad = run('report', ...REPORT, '-o', out, '--resume');
  assert.equal(bad.code, 2);
  assert.match(bad.err, /not a reslens progress file/);
  rmSync(partial);
  // A shard's output is the same kind of file as the progress of a run: use one as progress.
  const first = run('report', ...NO_COMPARE, '--shard', '0/2', '--no-gradients', '-o', out);
  assert.equal(first.code, 0, first.err);
  writeFileSync(partial, readFileSync(out));
  rmSync(out);
  const noFlag = run('report', ...NO_COMPARE, '--shard', '0/2', '--no-gradients', '-o', out);
  assert.equal(noFlag.code, 2);
  assert.match(noFlag.err, /--resume to continue it or --force to start over/);
  const other = run('report', ...NO_COMPARE, '--shard', '0/2', '--no-gradients', '--samples', '5', '-o', out, '--resume');
  assert.equal(other.code, 2);
  assert.match(other.err, /cannot resume: .*samples 4 ≠ 5/);
  const unsharded = run('report', ...NO_COMPARE, '--no-gradients', '-o', out, '--resume');
  assert.equal(unsharded.code, 2);
  assert.match(unsharded.err, /cannot resume: .*shard 0\/2/);
  rmSync(partial);
});

test('4 shards merged equal one run; merge refuses an incomplete or mixed set', async () => {
  assert.ok(existsSync(reference), 'needs the reference report');
  const shards = [0, 1, 2, 3].map((i) => path.join(dir, `shard-${i}.json`));
  // Two at a time, as two machines would.
  const runShard = (i: number) =>
    new Promise<void>((res, rej) => {
      const c = spawn(process.execPath, [CLI, 'report', ...REPORT, '--shard', `${i}/4`, '-o', shards[i]!], { stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      c.stderr.on('data', (d) => (err += d));
      c.on('exit', (code) => (code === 0 ? res() : rej(new Error(`shard ${i}: exit ${code}: ${err}`))));
    });
  {
    await Promise.all([runShard(0), runShard(1)]);
    await Promise.all([runShard(2), runShard(3)]);
    const merged = path.join(dir, 'merged.json');
    const m = run('merge', shards[2]!, shards[0]!, shards[3]!, shards[1]!, '-o', merged);
    assert.equal(m.code, 0, m.err);
    conforms('Report', json(merged));
    assert.deepEqual(withoutTimings(json(merged)), withoutTimings(json(reference)));
    const missing = run('merge', shards[0]!, shards[1]!, shards[3]!, '-o', path.join(dir, 'nope.json'));
    assert.equal(missing.code, 2);
    assert.match(missing.err, /shards 2\/4 are missing/);
    const twice = run('merge', shards[0]!, shards[0]!, '-o', path.join(dir, 'nope.json'));
    assert.equal(twice.code, 2);
    assert.match(twice.err, /given twice/);
    const mixed = path.join(dir, 'mixed.json');
    assert.equal(run('report', ...REPORT, '--seed', '5', '--shard', '1/4', '-o', mixed).code, 0);
    const bad = run('merge', shards[0]!, mixed, shards[2]!, shards[3]!, '-o', path.join(dir, 'nope.json'));
    assert.equal(bad.code, 2);
    assert.match(bad.err, /options differ/);
    assert.equal(run('merge', reference, '-o', path.join(dir, 'nope.json')).code, 2, 'a report is not a shard');
  }
});

// ------------------------------------------------------------------ HTML in a browser

function findChromium(): string | null {
  for (const c of ['chromium', 'chromium-browser', 'google-chrome']) {
    const r = spawnSync('sh', ['-c', `command -v ${c}`], { encoding: 'utf8' });
    if (r.status === 0 && r.stdout.trim()) return r.stdout.trim();
  }
  return null;
}

test('the HTML page draws its seven plots in headless Chromium', (t) => {
  assert.ok(existsSync(referenceHtml), 'needs the reference report');
  const html = readFileSync(referenceHtml, 'utf8');
  assert.doesNotMatch(html, /<script|https?:\/\/(?!www\.w3\.org)/, 'no scripts and no network references');
  const chromium = findChromium();
  // .ci/run installs Debian's chromium; without it this test cannot show anything, so it fails.
  assert.ok(chromium, 'chromium is not installed: apt-get install chromium');
  // A copy with a script that counts, in the browser's own DOM, the drawn elements of the data marks per plot.
  const probe = html.replace('</body>', `<script>
for (const f of document.querySelectorAll('figure.plot')) {
  const marks = f.querySelectorAll('svg g.role-mark > path, svg g.role-mark > rect, svg g.role-mark > circle');
  const kinds = [...new Set([...f.querySelectorAll('svg g.role-mark')].map((g) => [...g.classList].find((c) => c.startsWith('mark-'))))];
  const p = document.createElement('pre');
  p.className = 'count';
  p.textContent = f.id + ' ' + marks.length + ' ' + kinds.join(',');
  document.body.appendChild(p);
}
</script></body>`);
  const file = path.join(dir, 'probe.html');
  writeFileSync(file, probe);
  const profile = mkdtempSync(path.join(os.tmpdir(), 'reslens-chromium-'));
  try {
    const r = spawnSync(chromium, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', `--user-data-dir=${profile}`, '--dump-dom', `file://${file}`], { encoding: 'utf8', timeout: 60000 });
    assert.equal(r.status, 0, r.stderr);
    const counts = new Map([...r.stdout.matchAll(/<pre class="count">plot-(\S+) (\d+) (\S*)<\/pre>/g)].map((m) => [m[1]!, { n: Number(m[2]), kinds: m[3]! }]));
    t.diagnostic(JSON.stringify(Object.fromEntries(counts)));
    const expect: Record<string, RegExp> = { single: /mark-symbol/, k: /mark-line/, tau: /mark-symbol/, paths: /mark-rect/, gradients: /mark-symbol/, contribution: /mark-line/, exact: /mark-line/ };
    assert.deepEqual([...counts.keys()], Object.keys(expect));
    for (const [plot, kind] of Object.entries(expect)) {
      const c = counts.get(plot)!;
      assert.ok(c.n > 0, `plot ${plot} drew no marks`);
      assert.match(c.kinds, kind, `plot ${plot}: ${c.kinds}`);
    }
    // The k plot has both networks' curves.
    assert.ok(counts.get('k')!.n >= 4, 'residual and plain curves');
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------ HTML: what the plots say

/** Each figure's inline SVG, by plot name. */
function figures(html: string): Map<string, string> {
  return new Map([...html.matchAll(/<figure id="plot-(\w+)"(.*?)<\/figure>/gs)].map((m) => [m[1]!, m[2]!]));
}
/** The data points of a figure (vega's symbol marks): fill and position inside the plot area. */
function points(svg: string): { fill: string; x: number; y: number }[] {
  return [...svg.matchAll(/<g class="mark-symbol role-mark[^"]*"[^>]*>(.*?)<\/g>/gs)].flatMap((g) =>
    [...g[1]!.matchAll(/transform="translate\(([-\d.e]+),([-\d.e]+)\)"[^>]*?fill="(#[0-9a-f]{6})"/g)].map((m) => ({ x: Number(m[1]), y: Number(m[2]), fill: m[3]! })));
}
const rgb = (c: string) => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16));
const distance = (a: string, b: string) => Math.hypot(...rgb(a).map((v, i) => v - rgb(b)[i]!));

test('HTML plots: one colour per concept, distinct swap counts, captions that name only drawn series, decade ticks, no point on the frame', async () => {
  const html = readFileSync(referenceHtml, 'utf8');
  const figs = figures(html);
  const doc = json(reference);
  // The measured model is blue in every chart; the --compare network orange; downsampling blocks purple.
  const single = points(figs.get('single')!);
  const down = new Set(doc.lesion.single.filter((s: { downsampling: boolean }) => s.downsampling).map((s: { unit: number }) => s.unit));
  assert.ok(down.size > 0 && single.length === doc.lesion.single.length);
  assert.deepEqual(new Set(single.map((p) => p.fill)), new Set([COLORS.model, COLORS.downsampling]));
  assert.match(figs.get('k')!, new RegExp(`network: residual \\(res\\.onnx\\)"[^>]*fill="${COLORS.model}"`));
  assert.match(figs.get('k')!, new RegExp(`network: plain \\(plain\\.onnx\\)"[^>]*fill="${COLORS.compare}"`));
  assert.notEqual(COLORS.downsampling, COLORS.compare);
  // Swap counts: one colour each, far apart (not five shades of one blue).
  const swapFills = [...new Set(points(figs.get('tau')!).map((p) => p.fill))];
  assert.equal(swapFills.length, doc.lesion.reorder.length);
  for (const a of swapFills) for (const b of swapFills) if (a !== b) assert.ok(distance(a, b) > 80, `${a} and ${b} look alike`);
  // No unlabelled line: every line or point series of the τ plot is in its legend.
  assert.doesNotMatch(figs.get('tau')!, /class="mark-line role-mark/);
  assert.match(figs.get('tau')!, /mean of a swap count/);
  // The log-scale gradient axis labels whole decades only, so it has no minor gridlines.
  const labels = [...figs.get('gradients')!.matchAll(/<text[^>]*>([^<]+)<\/text>/g)].map((m) => m[1]!).filter((t) => /^[\d.e+-]+$/.test(t));
  const yLabels = labels.filter((t) => t.includes('e'));
  assert.ok(yLabels.length >= 2, labels.join(' '));
  for (const t of yLabels) assert.match(t, /^1e[-+]?\d+$/);
  // Padding: no data point sits on the plot's frame, where half of it would be cut.
  for (const [name, svg] of figs) {
    for (const p of points(svg)) assert.ok(p.y >= 5 && p.y <= 235 && p.x >= 5 && p.x <= 555, `${name}: a point at (${p.x}, ${p.y}) is on the frame`);
  }
  // Captions: the red stochastic-depth line is named only when the report has it, and drawn then.
  assert.equal(doc.paths.stochasticDepth, null);
  assert.doesNotMatch(html, /\bred\b/);
  const withSd = { ...doc, paths: { ...doc.paths, stochasticDepth: { survival: [1, 0.5], source: 'test', distribution: doc.paths.distribution.map((d: { probability: number }) => d.probability), summary: { mean: 3, sd: 1, mode: 3 }, shortestRange95: { lo: 1, hi: 5, held: 0.95 } } } };
  assert.match(captions(withSd).paths.title, /red line: lengths sampled in training with stochastic depth/);
  assert.match(figures(await renderHtml(withSd)).get('paths')!, new RegExp(`stroke="${COLORS.stochasticDepth}"`));
  // The exact shares in the model's colour, the sampled estimate of the gradients part beside
  // them in its own; without the gradients part the caption and the plot have only the exact series.
  const n = doc.exact.n;
  const exactFills = points(figs.get('exact')!).map((p) => p.fill);
  assert.equal(exactFills.filter((f) => f === COLORS.model).length, n + 1);
  assert.equal(exactFills.filter((f) => f === COLORS.sampled).length, doc.gradients.ks.length);
  assert.match(captions(doc).exact.title, /exact .*brown, the sampled estimate/);
  const exactOnly = { ...doc, gradients: null };
  assert.doesNotMatch(captions(exactOnly).exact.title, /brown|sampled/);
  assert.deepEqual(new Set(points(figures(await renderHtml(exactOnly)).get('exact')!).map((p) => p.fill)), new Set([COLORS.model]));
  assert.match(captions({ ...doc, exact: null }).exact.missing, /--exact/);
  // Top-5 error (models of more than 10 classes) as teal squares beside the top-1 points, in
  // the single and k charts; a 10-class model has none and its captions do not name them.
  assert.equal(doc.lesion.baseline.top5Error, undefined);
  assert.doesNotMatch(captions(doc).single.title, /top-5/);
  assert.ok(!points(figs.get('single')!).some((p) => p.fill === COLORS.top5));
  type Err = { error: number };
  const t5 = (e: Err) => ({ ...e, top5Error: e.error / 2 });
  const withTop5 = {
    ...doc,
    lesion: {
      ...doc.lesion,
      baseline: t5(doc.lesion.baseline),
      single: doc.lesion.single.map(t5),
      k: doc.lesion.k.map((g: { samples: Err[] }) => ({ ...g, samples: g.samples.map(t5) })),
    },
  };
  const figs5 = figures(await renderHtml(withTop5));
  assert.equal(points(figs5.get('single')!).filter((p) => p.fill === COLORS.top5).length, doc.lesion.single.length);
  assert.equal(points(figs5.get('k')!).filter((p) => p.fill === COLORS.top5).length, doc.lesion.k.length + 1);
  assert.match(captions(withTop5).single.title, /teal squares: top-5 error/);
  assert.match(captions(withTop5).k.title, /teal squares: the mean top-5 error/);
});

test('the HTML page of a real report as a person sees it: a headless Chromium screenshot with all seven plots drawn', (t) => {
  const chromium = findChromium();
  assert.ok(chromium, 'chromium is not installed: apt-get install chromium');
  // Kept after the test, so the screenshot can be looked at (its folder is printed).
  const shots = mkdtempSync(path.join(os.tmpdir(), 'reslens-report-screenshot-'));
  const html = path.join(shots, 'resnet20.html');
  const r = run('report', 'fixtures/models/resnet20.onnx', '--compare', 'fixtures/models/plain20.onnx', '--limit', '100', ...CPU, '--samples', '4', '--swaps', '5',
    '--gradient-samples', '2', '--gradient-batch', '8', '--exact', '--exact-batch', '25', '-o', path.join(shots, 'resnet20.json'), '--html', html);
  assert.equal(r.code, 0, r.err);
  const png = path.join(shots, 'resnet20.png');
  const profile = mkdtempSync(path.join(os.tmpdir(), 'reslens-chromium-'));
  const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run',
    '--hide-scrollbars', `--user-data-dir=${profile}`, '--enable-logging=stderr', '--v=0'];
  try {
    const shot = spawnSync(chromium, [...flags, '--window-size=1440,1900', `--screenshot=${png}`, `file://${html}`], { encoding: 'utf8', timeout: 90000 });
    assert.equal(shot.status, 0, shot.stderr);
    const dom = spawnSync(chromium, [...flags, '--dump-dom', `file://${html}`], { encoding: 'utf8', timeout: 90000 });
    assert.equal(dom.status, 0, dom.stderr);
    for (const err of [shot.stderr, dom.stderr]) assert.doesNotMatch(err, /CONSOLE.*(Uncaught|Error)|Failed to load resource/, 'the page logs no errors');
    // As the browser built it: seven figures, each with its SVG and data marks.
    const built = figures(dom.stdout);
    assert.deepEqual([...built.keys()], ['single', 'k', 'tau', 'paths', 'gradients', 'contribution', 'exact']);
    for (const [name, svg] of built) assert.match(svg, /<svg[^>]*>.*class="mark-\w+ role-mark/s, `${name} has no drawn marks`);
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
  t.diagnostic(`screenshot: ${png}`);
  return checkScreenshot(png);
});

/** Not blank, and the model's, the --compare network's, the downsampling and the sampled estimate's colours cover visible areas (the plots were painted, not only built). */
async function checkScreenshot(png: string): Promise<void> {
  const sharp = (await import('sharp')).default;
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  assert.equal(info.width, 1440);
  let ink = 0;
  const near: Record<string, number> = { model: 0, compare: 0, downsampling: 0, sampled: 0 };
  const targets = Object.keys(near).map((k) => [k, rgb(COLORS[k as keyof typeof COLORS])] as const);
  for (let i = 0; i < data.length; i += 3) {
    const [r, g, b] = [data[i]!, data[i + 1]!, data[i + 2]!];
    if (r < 235 || g < 235 || b < 235) ink++;
    for (const [k, c] of targets) if (Math.abs(r - c[0]!) + Math.abs(g - c[1]!) + Math.abs(b - c[2]!) < 30) near[k]!++;
  }
  const pixels = info.width * info.height;
  assert.ok(ink / pixels > 0.03, `only ${((ink / pixels) * 100).toFixed(2)}% of the page is not white`);
  for (const [k, n] of Object.entries(near)) assert.ok(n > 50, `${k} colour (${COLORS[k as keyof typeof COLORS]}) covers ${n} pixels`);
}

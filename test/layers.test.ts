/**
 * The layers of src/ import only downwards: commands → report, ui → studies → engine →
 * surgery → loader, paths; errors.ts, random.ts, blocklist.ts, files.ts, text.ts and oserror.ts are leaves every
 * layer may use. Surgery is the engine's and the studies' business alone: what sits above
 * them reaches graphs through a study. The test reads every import statement under src/.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const SRC = path.resolve('src');

/** Rank of each part of src/; a file may import a lower rank, or its own part. */
const RANK: Record<string, number> = {
  leaf: 0,
  loader: 1,
  paths: 1,
  surgery: 2,
  engine: 3,
  studies: 4,
  report: 5,
  ui: 5,
  commands: 6,
  cli: 7,
};
const LEAVES = new Set(['errors.ts', 'random.ts', 'blocklist.ts', 'files.ts', 'text.ts', 'oserror.ts']);
/** Parts that may import surgery directly. */
const SEE_SURGERY = new Set(['surgery', 'engine', 'studies']);

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? files(p) : /\.tsx?$/.test(e.name) ? [p] : [];
  });
}

/** The part a file under src/ belongs to. */
function partOf(file: string): string {
  const rel = path.relative(SRC, file).split(path.sep);
  if (rel.length === 1) {
    if (LEAVES.has(rel[0]!)) return 'leaf';
    if (rel[0] === 'cli.ts' || rel[0] === 'main.ts') return 'cli';
    return `unknown (${rel[0]})`;
  }
  return rel[0]!;
}

/** Relative module specifiers of static imports, re-exports and dynamic imports. */
function importsOf(text: string): string[] {
  const out: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s*['"]([^'"]+)['"]|(?:^|\n)\s*import\s*['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of text.matchAll(re)) {
    const spec = m[1] ?? m[2] ?? m[3]!;
    if (spec.startsWith('.')) out.push(spec);
  }
  return out;
}

function resolve(from: string, spec: string): string {
  return path.resolve(path.dirname(from), spec).replace(/\.js$/, '.ts');
}

test('importsOf finds static, re-exported, multi-line and dynamic imports', () => {
  const text = `import { a } from './a.js';\nimport type {\n  B,\n} from '../b.js';\nexport { c } from './c.js';\nimport './side.js';\nconst d = await import('../ui/d.js');\nimport x from 'commander';`;
  assert.deepEqual(importsOf(text), ['./a.js', '../b.js', './c.js', './side.js', '../ui/d.js']);
});

test('every import in src/ points down the layers', () => {
  const all = files(SRC);
  assert.ok(all.length > 50, `only ${all.length} files found under src/`);
  const wrong: string[] = [];
  let seen = 0;
  for (const file of all) {
    const from = partOf(file);
    assert.ok(from in RANK, `${path.relative(SRC, file)}: in no layer (${from}); add it to the table in this test`);
    for (const spec of importsOf(readFileSync(file, 'utf8'))) {
      const target = resolve(file, spec);
      assert.ok(target.startsWith(SRC + path.sep), `${path.relative(SRC, file)} imports ${spec}, outside src/`);
      const to = partOf(target);
      assert.ok(to in RANK, `${path.relative(SRC, file)} imports ${spec}, in no layer`);
      seen++;
      const where = `${path.relative(SRC, file)} → ${path.relative(SRC, target)}`;
      if (from === to) continue;
      if (RANK[to]! >= RANK[from]!) wrong.push(`${where} (${from} may not import ${to})`);
      else if (to === 'surgery' && !SEE_SURGERY.has(from)) wrong.push(`${where} (${from} reaches surgery through a study)`);
    }
  }
  assert.ok(seen > 150, `only ${seen} imports read`);
  assert.deepEqual(wrong, []);
});

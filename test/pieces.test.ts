/** The programs' prefix trie cut into pieces (engine/pieces.ts): every step once, every program reachable. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pieces, type Piece } from '../src/engine/pieces.js';
import { DELETE, distinctSteps, intactProgram, type Program, type Step } from '../src/surgery/split.js';
import { Random } from '../src/random.js';

/** Steps as programSteps makes them, for `units` blocks between a stem and a head. */
function steps(p: Program): Step[] {
  const out: Step[] = [];
  let key = '|s0';
  out.push({ seg: 0, mode: { kind: 'full' }, key });
  p.order.forEach((u, slot) => {
    const m = p.modes[u]!;
    key += `|${u}${m.kind === 'full' ? '' : ':' + m.kind}`;
    out.push({ seg: slot + 1, unit: u, mode: m, key });
  });
  key += '|head';
  out.push({ seg: p.order.length + 1, mode: { kind: 'full' }, key });
  return out;
}

function sweep(n: number): Step[][] {
  return [intactProgram(n), ...[...Array(n).keys()].map((i) => ({ ...intactProgram(n), modes: intactProgram(n).modes.map((m, j) => (j === i ? DELETE : m)) }))].map(steps);
}

/** Each program's steps as the pieces compute them: the feeding outputs' paths, then its own. */
function reached(plan: Piece[], programs: number): Step[][] {
  const got: Step[][] = Array.from({ length: programs }, () => []);
  const seen = new Array<number>(programs).fill(0);
  const visit = (i: number, before: Step[]) => {
    for (const o of plan[i]!.outputs) {
      const path = [...before, ...o.steps];
      for (const pi of o.programs) {
        got[pi] = path;
        seen[pi]!++;
      }
      for (const c of o.feeds) {
        assert.ok(c > i, `piece ${c} runs after the piece ${i} that feeds it`);
        assert.equal(plan[c]!.parent, i);
        visit(c, path);
      }
    }
  };
  visit(0, []);
  assert.deepEqual(seen, new Array(programs).fill(1), 'every program is scored exactly once');
  return got;
}

function check(lists: Step[][], limit: number): Piece[] {
  const plan = pieces(lists, limit);
  assert.equal(plan[0]!.parent, -1);
  for (const p of plan) assert.ok(p.size <= limit && p.size > 0, `a piece of ${p.size} steps, limit ${limit}`);
  assert.equal(plan.reduce((a, p) => a + p.size, 0), distinctSteps(lists), 'every distinct step computed once');
  const got = reached(plan, lists.length);
  lists.forEach((l, i) => assert.deepEqual(got[i]!.map((s) => s.key), l.map((s) => s.key), `program ${i}`));
  return plan;
}

test('a single-deletion sweep: one piece when it fits; past the limit, ranges of the intact spine with the branches leaving them', () => {
  const lists = sweep(50);
  const total = distinctSteps(lists);
  assert.equal(check(lists, total).length, 1);
  const plan = check(lists, 400);
  assert.ok(plan.length >= Math.ceil(total / 400) && plan.length <= Math.ceil(total / 400) + 2, `${plan.length} pieces of ${total} steps`);
  // Each piece after the first starts on the spine: fed by the intact network's activation.
  for (const p of plan.slice(1)) {
    const feeder = plan[p.parent]!.outputs[p.from]!;
    assert.ok(!feeder.steps.some((s) => s.mode.kind !== 'full'), 'a piece starts from an intact activation');
  }
});

test('random programs (deletions, reorders) at limits from 1 to the whole trie', () => {
  const r = new Random(7);
  const rand = () => r.next();
  const n = 12;
  const lists: Step[][] = [];
  for (let k = 0; k < 40; k++) {
    const p = intactProgram(n);
    p.modes = p.modes.map((m) => (rand() < 0.25 ? DELETE : m));
    if (rand() < 0.3) {
      const i = Math.floor(rand() * (n - 1));
      [p.order[i], p.order[i + 1]] = [p.order[i + 1]!, p.order[i]!];
    }
    lists.push(steps(p));
  }
  lists.push(lists[3]!); // the same program twice: one output, both scored
  for (const limit of [1, 2, 5, 17, 60, 1000]) check(lists, limit);
  assert.equal(check(lists, 1).length, distinctSteps(lists), 'limit 1: a piece per step');
});

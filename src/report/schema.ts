/**
 * The definition of `reslens report`'s JSON document, and of the `--json` output of every
 * command, which is the matching part of it: `inspect --json` is a report's `inspect`,
 * `lesion --json` its `lesion` (and `compare`), `paths --json` its `paths`, `gradients --json`
 * its `gradients`. schemas/report.schema.json is generated from these definitions
 * (scripts/gen-schema.ts) and a test keeps the two equal.
 *
 * Objects are strict: a field a command adds must be added here too, or the schema tests fail.
 */
import { z } from 'zod';

export const SCHEMA_VERSION = 1;

const int = () => z.number().int();
const count = () => z.number().int().nonnegative();
const prob = () => z.number().min(0).max(1);
/** A number that JSON turns into null when it is NaN or infinite. */
const maybe = () => z.number().nullable();

// ------------------------------------------------------------------ shared pieces

export const ModelRef = z.strictObject({
  path: z.string().describe('the ONNX file as given on the command line'),
  sha256: z.string().describe('SHA-256 of the ONNX file'),
});

export const DataRef = z.strictObject({
  description: z.string().describe('format, file and sample count, e.g. "NPY x.npy (400 images; labels y.npy)"'),
  size: count().describe('samples used (after --limit)'),
  sha256: z.string().describe('SHA-256 of the data file(s)'),
});

export const Measured = z.strictObject({
  error: prob().describe('1 - correct/total (non-finite logits count as errors)'),
  correct: count(),
  total: count(),
  nonFinite: count().describe('samples whose logits held NaN or infinity'),
  top5Error: prob().optional().describe('1 - (label among the 5 largest logits)/total; models of more than 10 classes only'),
});
const measured = Measured.shape;

const Interruption = z.strictObject({ samplesDone: count() }).describe('set when the run was interrupted: the numbers cover only these first samples');

// ------------------------------------------------------------------ inspect

const Shape = z.array(int()).nullable();

const Sublayer = z.strictObject({
  layer: count().describe('the transformer layer, from 0'),
  kind: z.enum(['attention', 'mlp']).describe('attention: the branch holds a Softmax over a MatMul of two data tensors; mlp: otherwise'),
});

export const InspectDoc = z
  .strictObject({
    model: z.strictObject({
      path: z.string(),
      sha256: z.string(),
      irVersion: int(),
      opset: int(),
      metadata: z.record(z.string(), z.string()).describe('ONNX metadata_props (reslens.* among them)'),
    }),
    kind: z.enum(['residual', 'plain', 'dense']),
    input: z.strictObject({ name: z.string(), shape: z.array(int()) }),
    blocks: z.array(
      z.strictObject({
        index: count(),
        stage: count(),
        input: z.string(),
        output: z.string(),
        shortcut: z.enum(['identity', 'projection']),
        post: z.string().nullable().describe('the op after the Add (Relu, Clip) or null'),
        downsampling: z.boolean(),
        residualBranch: z.array(z.string()),
        shortcutOps: z.array(z.string()),
        params: count(),
        inputShape: Shape,
        outputShape: Shape,
        sublayer: Sublayer.optional().describe('transformers only: the layer and the kind of sublayer this block is'),
      }),
    ),
    layers: z.array(
      z.strictObject({
        index: count(),
        stage: count(),
        input: z.string(),
        output: z.string(),
        ops: z.array(z.string()),
        params: count(),
        inputShape: Shape,
        outputShape: Shape,
        deletable: z.boolean().describe('whether lesion can delete the layer: a plain chain, input shape = output shape'),
      }),
    ),
    stages: z.array(z.strictObject({ index: count(), units: z.array(count()), outputShape: Shape })),
    totals: z.strictObject({
      blocks: count(),
      layers: count(),
      stages: count(),
      paths: z.string().describe('2^blocks, exact, as a decimal string'),
      params: count(),
    }),
    stem: z.array(z.string()),
    head: z.array(z.string()),
    notes: z.array(z.string()),
  })
  .meta({ id: 'Inspect', description: 'reslens inspect --json: the residual structure of a model' });

// ------------------------------------------------------------------ lesion

const PerClassError = z.array(maybe()).describe('error per class label (null: no sample of that class)');

export const LesionDoc = z
  .strictObject({
    command: z.literal('lesion'),
    model: ModelRef,
    data: DataRef,
    onnxruntime: z.string(),
    device: z.string(),
    seconds: z.number().describe('timing'),
    network: z.enum(['residual', 'plain', 'dense']),
    unit: z.enum(['block', 'layer']),
    units: count(),
    mode: z.string().describe('delete | scale:ALPHA | mean'),
    seed: count(),
    baseline: z.strictObject({ ...measured, perClassError: PerClassError }),
    single: z.array(
      z.strictObject({
        unit: count(),
        stage: count(),
        downsampling: z.boolean(),
        ...measured,
        delta: z.number().describe('error - baseline error'),
        perClassError: PerClassError,
        sublayer: Sublayer.optional().describe('transformers, unit block: the sublayer this block is'),
        blocks: z.array(count()).optional().describe('unit layer: the blocks (sublayers) deleted together'),
      }),
    ),
    notDeletable: z.array(z.strictObject({ unit: count(), reason: z.string() })),
    k: z.array(
      z.strictObject({
        k: count(),
        eligible: count(),
        samples: z.array(z.strictObject({ blocks: z.array(count()), ...measured })),
        mean: z.number(),
        min: z.number(),
        max: z.number(),
      }),
    ),
    explicit: z.strictObject({ blocks: z.array(count()), ...measured }).nullable(),
    reorder: z.array(
      z.strictObject({
        swaps: count(),
        samples: z.array(z.strictObject({ order: z.array(count()), kendallTau: z.number(), ...measured })),
        meanTau: z.number(),
        meanError: z.number(),
      }),
    ),
    evaluations: count().describe('configurations evaluated'),
    interrupted: Interruption.optional(),
  })
  .meta({ id: 'Lesion', description: 'reslens lesion --json: test error with blocks deleted one at a time, k at a time, and reordered' });

// ------------------------------------------------------------------ paths

const Summary = z.strictObject({ mean: z.number(), sd: z.number(), mode: count() });

export const PathsDoc = z
  .strictObject({
    command: z.literal('paths'),
    n: count().describe('residual blocks'),
    source: z.string(),
    deleted: z.array(count()),
    distribution: z.array(z.strictObject({ k: count(), count: z.string().describe('C(n,k), exact'), probability: prob() })),
    totalPaths: z.string(),
    summary: Summary,
    shortestRanges: z.array(z.strictObject({ mass: prob(), lo: count(), hi: count(), held: prob() })),
    ranges: z.array(z.strictObject({ lo: count(), hi: count(), mass: prob() })),
    stochasticDepth: z
      .strictObject({
        survival: z.array(prob()),
        source: z.string(),
        distribution: z.array(z.number()),
        summary: Summary,
        shortestRange95: z.strictObject({ lo: count(), hi: count(), held: prob() }),
      })
      .nullable(),
  })
  .meta({ id: 'Paths', description: 'reslens paths --json: the path-length distribution of the unraveled network' });

// ------------------------------------------------------------------ gradients

export const GradientsDoc = z
  .strictObject({
    command: z.literal('gradients'),
    model: ModelRef,
    data: DataRef,
    onnxruntime: z.string(),
    device: z.string(),
    seconds: z.number().describe('timing'),
    samplesPerSecond: z.number().nullable().describe('timing'),
    n: count().describe('residual blocks'),
    ks: z.array(count()).describe('path lengths sampled'),
    batchSize: count(),
    seed: count(),
    batches: z.array(z.array(count())).describe('image indices of each random batch'),
    samples: z.array(
      z.strictObject({
        k: count(),
        blocks: z.array(count()).describe('blocks whose residual branch carries the gradient'),
        batch: count().describe('index into batches'),
        norm: maybe().describe('L2 norm of the gradient at the first block input (null: not run)'),
      }),
    ),
    meanNorm: z.array(maybe()).describe('mean norm per path length k = 0..n (null: not sampled)'),
    meanLoss: z.number(),
    interrupted: Interruption.optional(),
    effective: z.strictObject({
      mass: z.number(),
      range: z.strictObject({ lo: count(), hi: count(), mass: z.number() }).nullable(),
      pathShare: maybe(),
      share: z.array(z.number()).describe('share of the total gradient magnitude carried by paths of length k (C(n,k)·E|g_k|, normalised)'),
      fit: z
        .strictObject({ factorPerBlock: z.number(), slope: z.number(), intercept: z.number(), r2: z.number(), points: count() })
        .nullable(),
    }),
  })
  .meta({ id: 'Gradients', description: 'reslens gradients --json: gradient magnitude against path length and the effective paths' });

// ------------------------------------------------------------------ the exact decomposition

export const ExactSummaryDoc = z.strictObject({
  batches: count().describe('consecutive batches of the data'),
  images: count(),
  fullNorm: z.number().describe('mean over batches of |G|, the full gradient at the first block input'),
  identityError: z.number().describe('|Σ_k G_k − G| / |G| over all batches together (float32 rounding; near 1e-6)'),
  perLength: z.array(
    z.strictObject({
      k: count(),
      norm: z.number().describe('mean over batches of |G_k|, G_k the sum of the gradients of all C(n,k) paths of length k'),
      share: z.number().describe('Σ_b ⟨G_k, G⟩ / Σ_b ⟨G, G⟩: the part of G along G carried by length k (the shares sum to 1; one can be negative)'),
    }),
  ),
  effectiveRange: z.tuple([count(), count()]).describe('shortest range [lo, hi] of lengths whose shares sum to at least mass'),
});

export const ExactDoc = z
  .strictObject({
    command: z.literal('gradients'),
    mode: z.literal('exact'),
    model: ModelRef,
    data: DataRef,
    onnxruntime: z.string(),
    device: z.string(),
    seconds: z.number().describe('timing'),
    n: count().describe('residual blocks'),
    batchSize: count(),
    mass: z.number(),
    imagesPerSecond: z.number().nullable().describe('timing'),
    exact: ExactSummaryDoc,
    sampled: z
      .strictObject({
        samples: count().describe('path samples per length'),
        seed: count(),
        ks: z.array(count()),
        meanNorm: z.array(maybe()).describe('E|g_k| per k (null: not sampled)'),
        share: z.array(z.number()).describe('C(n,k)·E|g_k| normalised over the sampled lengths'),
        seconds: z.number().describe('timing'),
      })
      .optional()
      .describe('gradients --exact --samples N: the paper\'s sampled estimate on the same batches'),
  })
  .meta({ id: 'Exact', description: 'reslens gradients --exact --json: the gradient at the first block input split exactly by path length' });

// ------------------------------------------------------------------ report

export const PART_NAMES = ['inspect', 'lesion', 'reorder', 'paths', 'gradients', 'exact', 'compare'] as const;
export type PartName = (typeof PART_NAMES)[number];

export const ReportConfig = z
  .strictObject({
    parts: z.strictObject({
      inspect: z.boolean(),
      lesion: z.boolean().describe('single-block and k-block sweeps'),
      reorder: z.boolean(),
      paths: z.boolean(),
      gradients: z.boolean(),
      exact: z.boolean().describe('the exact decomposition of the gradient by path length (--exact)'),
      compare: z.boolean().describe('the lesion sweeps on the --compare (plain) network'),
    }),
    mode: z.string(),
    k: z.array(count()),
    samples: count().describe('random subsets per k, and orders per swap count'),
    swaps: count(),
    includeDownsampling: z.boolean(),
    seed: count().describe('lesion subsets and reorderings'),
    batch: count().describe('evaluation batch size of the lesion parts (does not change the results)'),
    gradientK: z.array(count()),
    gradientSamples: count(),
    gradientBatch: count(),
    gradientSeed: count(),
    exactBatch: count().describe('images per batch of the exact decomposition (the loss is the mean over a batch)'),
    mass: z.number(),
    limit: count().nullable(),
    compare: z.string().nullable().describe('path of the --compare model'),
  })
  .meta({ id: 'ReportConfig', description: 'every option that determines the measurements' });

const PartSeconds = z.strictObject(Object.fromEntries(PART_NAMES.map((p) => [p, z.number().nullable()])) as Record<PartName, z.ZodNullable<z.ZodNumber>>);

export const Timings = z
  .strictObject({
    startedAt: z.string().describe('ISO time the run (or its first shard) started'),
    finishedAt: z.string().describe('ISO time the report was assembled'),
    seconds: z.number().describe('sum of the parts'),
    parts: PartSeconds.describe('seconds per part, summed over resumed sessions and shards (null: skipped)'),
  })
  .meta({ id: 'Timings' });

export const Report = z
  .strictObject({
    schemaVersion: z.literal(SCHEMA_VERSION),
    command: z.literal('report'),
    reslens: z.string().describe('reslens version'),
    onnxruntime: z.string().describe('onnxruntime version'),
    device: z.string(),
    seeds: z.strictObject({ lesion: count(), gradients: count() }),
    model: z.strictObject({ path: z.string(), sha256: z.string(), metadata: z.record(z.string(), z.string()) }),
    data: DataRef,
    config: ReportConfig,
    notes: z.array(z.string()).describe('why a part was skipped, and other remarks'),
    timings: Timings,
    inspect: InspectDoc.nullable(),
    lesion: LesionDoc.nullable().describe('single and k-block sweeps, and the reordering (lesion.reorder)'),
    paths: PathsDoc.nullable(),
    gradients: GradientsDoc.nullable(),
    exact: ExactDoc.nullable().describe('the exact decomposition by path length (report --exact)'),
    compare: LesionDoc.nullable().describe('the lesion sweeps of the --compare network'),
  })
  .meta({
    id: 'Report',
    title: 'reslens report',
    description: 'Everything reslens measures about one trained ResNet, in one document (reslens report -o report.json).',
  });
export type Report = z.infer<typeof Report>;
export type LesionDoc = z.infer<typeof LesionDoc>;
export type GradientsDoc = z.infer<typeof GradientsDoc>;
export type ExactDoc = z.infer<typeof ExactDoc>;
export type PathsDoc = z.infer<typeof PathsDoc>;
export type InspectDoc = z.infer<typeof InspectDoc>;
export type ReportConfig = z.infer<typeof ReportConfig>;

/**
 * The timing fields: everything else in a report is determined by the model, the data, the
 * configuration and the seeds, so a resumed, a sharded-and-merged and an uninterrupted run
 * agree on it exactly.
 */
export const TIMING_FIELDS = ['timings', 'lesion.seconds', 'gradients.seconds', 'gradients.samplesPerSecond', 'exact.seconds', 'exact.imagesPerSecond', 'compare.seconds'] as const;

/** A copy of a report (or any part-keyed document) without its timing fields. */
export function withoutTimings<T>(doc: T): T {
  const copy = structuredClone(doc) as Record<string, unknown>;
  for (const f of TIMING_FIELDS) {
    const [a, b] = f.split('.') as [string, string | undefined];
    if (b === undefined) delete copy[a];
    else if (copy[a] && typeof copy[a] === 'object') delete (copy[a] as Record<string, unknown>)[b];
  }
  return copy as T;
}

// ------------------------------------------------------------------ progress and shard files

export const EvalCounts = z.strictObject({
  correct: count(),
  total: count(),
  nonFinite: count(),
  error: z.number(),
  perClass: z.strictObject({ correct: z.array(count()), total: z.array(count()) }),
  top5: count().optional(),
});

const UnitDesc = z.strictObject({
  unit: count(),
  stage: count(),
  downsampling: z.boolean(),
  deletable: z.boolean(),
  reason: z.string().optional(),
  inShape: z.string(),
  outShape: z.string(),
});

export const NetworkDesc = z.strictObject({ kind: z.enum(['residual', 'plain', 'dense']), n: count(), units: z.array(UnitDesc) });
export type NetworkDesc = z.infer<typeof NetworkDesc>;

/** A lesion-type part: the programs this shard owns and their counts after `batchesDone` batches. */
const EvalPart = z.strictObject({
  done: z.boolean(),
  seconds: z.number(),
  programs: count().describe('all programs of the part (every shard)'),
  owned: z.array(count()).describe("indices of this shard's programs"),
  batchesDone: count(),
  results: z.array(EvalCounts).describe('counts of the owned programs, in owned order'),
});

const GradientPart = z.strictObject({
  done: z.boolean(),
  seconds: z.number(),
  batches: count().describe('all batches of the gradient plan'),
  owned: z.array(count()),
  finished: z.array(z.strictObject({ batch: count(), loss: z.number(), norms: z.array(maybe()) })),
});

/** The exact part: the float64 sums of every finished batch this shard owns (merged by summing in batch order). */
const ExactPart = z.strictObject({
  done: z.boolean(),
  seconds: z.number(),
  batches: count().describe('all batches of the exact plan'),
  owned: z.array(count()),
  finished: z.array(
    z.strictObject({
      batch: count(),
      images: count(),
      loss: z.number(),
      norms: z.array(z.number()).describe('|G_k| for k = 0..n'),
      dots: z.array(z.number()).describe('⟨G_k, G⟩ for k = 0..n'),
      gg: z.number().describe('⟨G, G⟩'),
      residual2: z.number().describe('|Σ_k G_k − G|²'),
    }),
  ),
});

const StaticPart = <T extends z.ZodType>(doc: T) => z.strictObject({ done: z.literal(true), seconds: z.number(), doc });

/**
 * `report.json.partial` (progress of a run, for --resume) and the output of `report --shard`
 * (the input of `reslens merge`): the raw counts, from which the report is assembled.
 */
export const ReportState = z
  .strictObject({
    schemaVersion: z.literal(SCHEMA_VERSION),
    kind: z.enum(['partial', 'shard']),
    reslens: z.string(),
    onnxruntime: z.string(),
    device: z.string(),
    config: ReportConfig,
    shard: z.strictObject({ index: count(), count: z.number().int().positive() }),
    model: z.strictObject({ path: z.string(), sha256: z.string(), metadata: z.record(z.string(), z.string()) }),
    data: DataRef.extend({ classes: count().nullable() }),
    network: NetworkDesc,
    comparison: z.strictObject({ model: ModelRef, data: DataRef, network: NetworkDesc }).nullable(),
    notes: z.array(z.string()),
    startedAt: z.string(),
    parts: z.strictObject({
      inspect: StaticPart(InspectDoc).nullable(),
      paths: StaticPart(PathsDoc).nullable(),
      lesion: EvalPart.nullable(),
      reorder: EvalPart.nullable(),
      compare: EvalPart.nullable(),
      gradients: GradientPart.nullable(),
      exact: ExactPart.nullable(),
    }),
  })
  .meta({ id: 'ReportState', description: 'progress of a report run (report.json.partial) or one shard of it (input of reslens merge)' });
export type ReportState = z.infer<typeof ReportState>;
export type EvalPartState = z.infer<typeof EvalPart>;
export type GradientPartState = z.infer<typeof GradientPart>;
export type ExactPartState = z.infer<typeof ExactPart>;

/**
 * The JSON Schema of the report (schemas/report.schema.json), with the shard/progress file
 * under $defs.ReportState. Deterministic: the committed file is this, stringified.
 */
export function reportJsonSchema(): Record<string, unknown> {
  const Root = Report;
  const schema = z.toJSONSchema(Root, { target: 'draft-2020-12', reused: 'inline' }) as Record<string, unknown>;
  const state = z.toJSONSchema(ReportState, { target: 'draft-2020-12', reused: 'inline' }) as Record<string, unknown>;
  const defs = { ...((schema.$defs as Record<string, unknown>) ?? {}) };
  for (const [k, v] of Object.entries((state.$defs as Record<string, unknown>) ?? {})) defs[k] ??= v;
  const { $schema: _s, $defs: _d, ...stateRoot } = state;
  defs.ReportState = stateRoot;
  const { id: _id, ...root } = schema;
  return { ...root, $defs: strip(defs) };
}

/** zod writes `id` into every definition that has one; in a JSON Schema the $defs key names it. */
function strip(defs: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(defs)) {
    const { id: _id, ...rest } = v as Record<string, unknown>;
    out[k] = rest;
  }
  return out;
}

export function schemaText(): string {
  return JSON.stringify(reportJsonSchema(), null, 2) + '\n';
}

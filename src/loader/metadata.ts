/**
 * ONNX metadata_props rewritten at the protobuf wire level: every top-level field of the
 * ModelProto (the graph, its weights, opsets) is copied byte for byte; only metadata_props
 * entries (field 14) whose key is set anew are dropped, and the new entries are appended. A
 * decode-and-re-encode would rewrite the whole file (and onnx-proto drops fields it does not
 * know), so the weights a user annotates stay exactly the weights they exported.
 */
const METADATA_PROPS = 14;

function readVarint(b: Uint8Array, at: number): [value: number, next: number] {
  let v = 0, mul = 1, i = at;
  for (;;) {
    if (i >= b.length) throw new Error('truncated varint');
    const byte = b[i++]!;
    v += (byte & 0x7f) * mul;
    if (byte < 0x80) return [v, i];
    mul *= 128;
    if (mul > 2 ** 63) throw new Error('varint too long');
  }
}

function varint(v: number): number[] {
  const out: number[] = [];
  while (v >= 0x80) {
    out.push((v % 128) | 0x80);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return out;
}

export interface WireField {
  field: number;
  /** The whole field, tag included. */
  start: number;
  end: number;
  /** Where a length-delimited field's payload starts (wire type 2), else -1. */
  payload: number;
}

/** The top-level fields of a protobuf message, in file order. Pure. */
export function wireFields(b: Uint8Array): WireField[] {
  const out: WireField[] = [];
  let i = 0;
  while (i < b.length) {
    const start = i;
    const [tag, afterTag] = readVarint(b, i);
    const field = Math.floor(tag / 8), type = tag % 8;
    let end: number, payload = -1;
    if (type === 0) end = readVarint(b, afterTag)[1];
    else if (type === 1) end = afterTag + 8;
    else if (type === 5) end = afterTag + 4;
    else if (type === 2) {
      const [len, p] = readVarint(b, afterTag);
      payload = p;
      end = p + len;
    } else throw new Error(`unsupported wire type ${type} at byte ${start}`);
    if (end > b.length) throw new Error(`field ${field} at byte ${start} runs past the end`);
    out.push({ field, start, end, payload });
    i = end;
  }
  return out;
}

function stringField(field: number, s: string): number[] {
  const bytes = [...Buffer.from(s, 'utf8')];
  return [...varint(field * 8 + 2), ...varint(bytes.length), ...bytes];
}

/** The key of a StringStringEntryProto payload. */
function entryKey(b: Uint8Array): string | null {
  for (const f of wireFields(b)) if (f.field === 1 && f.payload >= 0) return Buffer.from(b.subarray(f.payload, f.end)).toString('utf8');
  return null;
}

/** `model` with `props` set in its metadata_props (replacing entries of the same keys); everything else byte-identical. */
export function withMetadata(model: Uint8Array, props: Record<string, string>): Uint8Array {
  const keys = new Set(Object.keys(props));
  const parts: Uint8Array[] = [];
  for (const f of wireFields(model)) {
    if (f.field === METADATA_PROPS && f.payload >= 0) {
      const key = entryKey(model.subarray(f.payload, f.end));
      if (key !== null && keys.has(key)) continue;
    }
    parts.push(model.subarray(f.start, f.end));
  }
  for (const [k, v] of Object.entries(props)) {
    const entry = [...stringField(1, k), ...stringField(2, v)];
    parts.push(Uint8Array.from([...varint(METADATA_PROPS * 8 + 2), ...varint(entry.length), ...entry]));
  }
  return Buffer.concat(parts);
}

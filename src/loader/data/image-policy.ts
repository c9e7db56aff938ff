/**
 * What an image folder's decoder does to an image before it is normalised: how it is resized
 * and how it is cropped to the model's H,W. Pure: planImage says, for one image's size, the
 * resize target and the crop window, or why the image cannot be used.
 */
import { UserError } from '../../errors.js';

/**
 * `shorter`: the shorter side to N pixels, aspect kept (N unset: round(max(H,W)*256/224), the
 * ImageNet evaluation's 256 for 224); `exact`: stretched to H,W; `none`: left as it is.
 */
export type Resize = { kind: 'shorter'; to?: number } | { kind: 'exact' } | { kind: 'none' };
export type Crop = 'center' | 'none';

export interface ImagePolicy {
  resize: Resize;
  crop: Crop;
  /**
   * True when the user did not choose the policy: images already of the model's size are then
   * left untouched, so a folder of model-sized images reads exactly as the array it came from.
   */
  isDefault: boolean;
}

export const DEFAULT_POLICY: ImagePolicy = { resize: { kind: 'shorter' }, crop: 'center', isDefault: true };

export function parseResize(s: string): Resize {
  if (s === 'exact' || s === 'none') return { kind: s };
  const m = /^shorter(?::(\d+))?$/.exec(s);
  if (m) {
    if (m[1] === undefined) return { kind: 'shorter' };
    const to = Number(m[1]);
    if (to >= 1 && to <= 16384) return { kind: 'shorter', to };
  }
  throw new UserError(`--resize: '${s}' is not one of shorter, shorter:N (e.g. shorter:256), exact, none`);
}

export function parseCrop(s: string): Crop {
  if (s === 'center' || s === 'none') return s;
  throw new UserError(`--crop: '${s}' is not one of center, none`);
}

/** The shorter side's target for model size H,W. */
export function shorterSide(r: Resize, H: number, W: number): number {
  return r.kind === 'shorter' && r.to !== undefined ? r.to : Math.round((Math.max(H, W) * 256) / 224);
}

/** e.g. "resize shorter:256, crop center 224x224" (how the data line and --help word it). */
export function describePolicy(p: ImagePolicy, H: number, W: number): string {
  const r = p.resize.kind === 'shorter' ? `resize shorter side to ${shorterSide(p.resize, H, W)}` : p.resize.kind === 'exact' ? `resize to exactly ${H}x${W}` : 'no resize';
  const c = p.crop === 'center' ? `crop center ${H}x${W}` : 'no crop';
  return `${r}, ${c}${p.isDefault ? ` (images already ${H}x${W} untouched; --resize/--crop to change)` : ''}`;
}

/** Python's round (half to even), as torchvision's CenterCrop rounds its offsets. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

export interface ImagePlan {
  /** Resize to exactly this width and height, or null to keep the decoded size. */
  resize: { width: number; height: number } | null;
  /** The H,W window to take from the (resized) image, or null when it already is H,W. */
  crop: { left: number; top: number } | null;
}

/**
 * How one image of `width` x `height` becomes H x W; a string says why it cannot.
 * The shorter-side rule is torchvision's Resize(int): the longer side is truncated.
 */
export function planImage(width: number, height: number, H: number, W: number, p: ImagePolicy): ImagePlan | string {
  if (p.isDefault && width === W && height === H) return { resize: null, crop: null };
  let w = width, h = height;
  let resize: ImagePlan['resize'] = null;
  if (p.resize.kind === 'exact') {
    w = W; h = H;
  } else if (p.resize.kind === 'shorter') {
    const s = shorterSide(p.resize, H, W);
    if (width <= height) { w = s; h = Math.floor((s * height) / width); } else { h = s; w = Math.floor((s * width) / height); }
  }
  if (w !== width || h !== height) resize = { width: w, height: h };
  if (w === W && h === H) return { resize, crop: null };
  if (p.crop === 'none') return `is ${w}x${h}${resize ? ` after resizing (from ${width}x${height})` : ''} but the model takes ${W}x${H} (width x height) and --crop is none; pass --crop center or --resize exact`;
  if (w < W || h < H) return `is ${w}x${h}${resize ? ` after resizing (from ${width}x${height})` : ''}, smaller than the ${W}x${H} (width x height) crop; pass --resize shorter or --resize exact`;
  return { resize, crop: { left: roundHalfEven((w - W) / 2), top: roundHalfEven((h - H) / 2) } };
}

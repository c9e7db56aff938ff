/**
 * Preprocessing presets: the normalisation, input size and image policy that the usual
 * training recipes of each data set use (torchvision's ImageNet constants; the per-channel
 * statistics of the CIFAR and MNIST training sets).
 */
import { UserError } from '../../errors.js';
import type { ImagePolicy } from './image-policy.js';

export interface Preset {
  name: PresetName;
  mean: number[];
  std: number[];
  /** H,W the models of this data set take; absent for `none`. */
  size?: [number, number];
  /** The image policy the recipe evaluates with; absent: the default (model-sized images untouched). */
  policy?: ImagePolicy;
}

export const PRESET_NAMES = ['imagenet', 'cifar10', 'cifar100', 'mnist', 'fashion-mnist', 'none'] as const;
export type PresetName = (typeof PRESET_NAMES)[number];

export const PRESETS: Record<PresetName, Preset> = {
  // torchvision's evaluation transform: Resize(256), CenterCrop(224), Normalize.
  imagenet: { name: 'imagenet', mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225], size: [224, 224], policy: { resize: { kind: 'shorter', to: 256 }, crop: 'center', isDefault: false } },
  cifar10: { name: 'cifar10', mean: [0.4914, 0.4822, 0.4465], std: [0.247, 0.2435, 0.2616], size: [32, 32] },
  cifar100: { name: 'cifar100', mean: [0.5071, 0.4865, 0.4409], std: [0.2673, 0.2564, 0.2762], size: [32, 32] },
  mnist: { name: 'mnist', mean: [0.1307], std: [0.3081], size: [28, 28] },
  'fashion-mnist': { name: 'fashion-mnist', mean: [0.286], std: [0.353], size: [28, 28] },
  // Pixels as v/255, said explicitly (silences the "no normalisation" note).
  none: { name: 'none', mean: [0], std: [1] },
};

export function parsePreset(s: string): Preset {
  const p = PRESETS[s as PresetName];
  if (!p) throw new UserError(`--preset: '${s}' is not one of ${PRESET_NAMES.join(', ')}`);
  return p;
}

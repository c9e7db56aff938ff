/**
 * Choosing where networks run. onnxruntime-node does not fall back by itself when a provider
 * fails to load, so each candidate is tried on a one-node model and the next one taken.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { execFile } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { OptionError } from '../errors.js';
import { encodeModel, makeModel, makeNode, valueInfo } from '../loader/proto.js';
import { loadOrt, type Device } from './session.js';

export type DeviceRequest = 'auto' | Device;
export const DEVICES: DeviceRequest[] = ['auto', 'cpu', 'webgpu', 'cuda'];

/**
 * Why a device cannot be used here, or null when it can. `explicit`: the user asked for this
 * device by name, which admits a software adapter (SwiftShader) that auto passes over.
 */
export type DeviceProbe = (d: Device, o?: { explicit?: boolean }) => Promise<string | null>;

export interface DeviceChoice {
  device: Device;
  requested: DeviceRequest;
  /** Why the devices before it were passed over (auto). */
  skipped: { device: Device; reason: string }[];
}

function ortBinDir(): string | null {
  try {
    const req = createRequire(import.meta.url);
    const main = req.resolve('onnxruntime-node');
    const root = main.slice(0, main.lastIndexOf(`${path.sep}onnxruntime-node${path.sep}`) + '/onnxruntime-node'.length);
    return path.join(root, 'bin', 'napi-v6', process.platform, process.arch);
  } catch {
    return null;
  }
}

const ICD_DIRS = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d', '/usr/local/nvidia/share/vulkan/icd.d'];

function vulkanDrivers(): boolean {
  if (process.env.VK_DRIVER_FILES || process.env.VK_ICD_FILENAMES) return true;
  return ICD_DIRS.some((dir) => icdFiles(dir).length > 0);
}

function icdFiles(dir: string): string[] {
  try {
    return readdirSync(dir).filter((f) => f.endsWith('.json')).map((f) => path.join(dir, f));
  } catch {
    return [];
  }
}

/** Vulkan drivers that rasterise on the CPU: a WebGPU adapter on them is slower than the CPU provider. */
const SOFTWARE_DRIVERS: [RegExp, string][] = [
  [/swiftshader/i, 'SwiftShader'],
  [/lvp|lavapipe/i, 'lavapipe'],
];

/**
 * The Vulkan drivers loaded into this process (after a WebGPU session ran): the library of each
 * ICD file the loader would read that is mapped in memory.
 */
export function loadedVulkanDrivers(): string[] {
  const env = process.env.VK_DRIVER_FILES || process.env.VK_ICD_FILENAMES;
  const files = env ? env.split(':').filter(Boolean) : ICD_DIRS.flatMap(icdFiles);
  let maps = '';
  try {
    maps = readFileSync('/proc/self/maps', 'utf8');
  } catch {
    return [];
  }
  const libs = new Set<string>();
  for (const f of files) {
    try {
      const lib = (JSON.parse(readFileSync(f, 'utf8')) as { ICD?: { library_path?: string } }).ICD?.library_path;
      if (lib && maps.includes(`/${path.basename(lib)}`)) libs.add(path.basename(lib));
    } catch {
      /* an unreadable ICD file is the loader's business */
    }
  }
  return [...libs];
}

/** The software rasteriser behind the loaded drivers, when every one of them is one (else null). */
export function softwareAdapter(drivers: string[]): string | null {
  if (!drivers.length) return null;
  const names = drivers.map((d) => SOFTWARE_DRIVERS.find(([re]) => re.test(d))?.[1] ?? null);
  return names.every((n) => n) ? names[0]! : null;
}

/** trySession, plus (webgpu) the software adapter it ran on, if any: for the child probe. */
export async function probeHere(d: Device): Promise<{ r: string | null; software: string | null }> {
  const r = await trySession(d);
  return { r, software: r === null && d === 'webgpu' ? softwareAdapter(loadedVulkanDrivers()) : null };
}

export async function trySession(d: Device): Promise<string | null> {
  const m = encodeModel(makeModel({ nodes: [makeNode('Relu', ['x'], ['y'])], inputs: [valueInfo('x', [2])], outputs: [valueInfo('y', [2])] }));
  const ort = await loadOrt();
  try {
    const s = await ort.InferenceSession.create(m, { executionProviders: [d], logSeverityLevel: 4 });
    const r = await s.run({ x: new ort.Tensor('float32', new Float32Array([-1, 2]), [2]) });
    await s.release();
    const y = r.y!.data as Float32Array;
    return y[0] === 0 && y[1] === 2 ? null : 'the provider computed a wrong result on a test model';
  } catch (e) {
    return (e instanceof Error ? e.message : String(e)).split('\n')[0]!.slice(0, 200);
  }
}

/** The real probe: cheap checks first (files), then a one-node session. */
export const realProbe: DeviceProbe = async (d, o = {}) => {
  if (d === 'cpu') return null;
  if (d === 'cuda') {
    const dir = ortBinDir();
    if (!dir || !existsSync(path.join(dir, 'libonnxruntime_providers_cuda.so'))) return 'the CUDA provider library is not installed (onnxruntime-node fetches it at install time; see README, "GPU")';
    return (await probeInChild('cuda')).r;
  }
  if (process.platform !== 'linux' && process.platform !== 'win32') return `WebGPU is bundled for Linux and Windows only, not ${process.platform}`;
  if (process.platform === 'linux' && !vulkanDrivers()) return 'no Vulkan driver found (no ICD file in /usr/share/vulkan/icd.d), so WebGPU has no adapter';
  const r = await probeInChild('webgpu');
  if (r.r || !r.software || o.explicit) return r.r;
  return `its only adapter is ${r.software}, a software Vulkan that is slower than the CPU; ask for it with --device webgpu`;
};

/**
 * Dawn and the Vulkan loader print to the process's stderr while looking for an adapter;
 * probing in a child process keeps that noise (and any crash) away from the user.
 * Mesa's software rasteriser (lavapipe) is excluded: WebGPU on it is slower than the CPU provider.
 */
function probeInChild(d: Device): Promise<{ r: string | null; software: string | null }> {
  const here = fileURLToPath(import.meta.url);
  const script = `import(${JSON.stringify(pathToFileURL(here).href)}).then(m => m.probeHere(${JSON.stringify(d)})).then(r => process.stdout.write(JSON.stringify(r)), e => process.stdout.write(JSON.stringify({ r: String(e), software: null })))`;
  return new Promise((resolve) => {
    execFile(process.execPath, ['--input-type=module', '-e', script], {
      timeout: 30000,
      env: { ...process.env, VK_LOADER_DRIVERS_DISABLE: '*lvp*' },
    }, (err, stdout) => {
      try {
        const { r, software } = JSON.parse(stdout) as { r: string | null; software: string | null };
        resolve({ r: r && /adapter/i.test(r) ? 'no WebGPU adapter (no usable GPU behind Vulkan)' : r, software });
      } catch {
        resolve({ r: `the ${d} probe failed (${err ? err.message.split('\n')[0] : 'no answer'})`, software: null });
      }
    });
  });
}

export async function selectDevice(requested: DeviceRequest, probe: DeviceProbe = realProbe): Promise<DeviceChoice> {
  if (!DEVICES.includes(requested)) throw new OptionError('device', (f) => `${f('device')}: '${requested}' is not one of ${DEVICES.join(', ')}`);
  if (requested !== 'auto') {
    const why = await probe(requested, { explicit: true });
    if (why) {
      throw new OptionError('device', (f) => `${f('device')} ${requested}: not available here (${why}); use ${f('device')} auto or ${f('device')} cpu`);
    }
    return { device: requested, requested, skipped: [] };
  }
  const skipped: DeviceChoice['skipped'] = [];
  for (const d of ['cuda', 'webgpu'] as const) {
    const why = await probe(d);
    if (!why) return { device: d, requested, skipped };
    skipped.push({ device: d, reason: why });
  }
  return { device: 'cpu', requested, skipped };
}

/** Samples per forward pass when the user gives no --batch: GPUs want larger batches. */
export function defaultBatch(d: Device): number {
  return d === 'cpu' ? 128 : 512;
}

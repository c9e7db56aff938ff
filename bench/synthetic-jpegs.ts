/**
 * Writes N smooth random 224x224 JPEGs (a 7x7 grid of random colours, upsampled) into
 * DIR/0/, the image folder bench/lesion.ts --torchvision reads: model-sized, so that reslens
 * (sharp) and PyTorch (PIL) see the same pixels without either resizing.
 *
 *   node --import tsx bench/synthetic-jpegs.ts DIR [N=256]
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import sharp from 'sharp';
import { Random } from '../src/random.js';

const [dir, count = '256'] = process.argv.slice(2);
if (!dir) {
  process.stderr.write('usage: node --import tsx bench/synthetic-jpegs.ts DIR [N]\n');
  process.exit(2);
}
const rng = Random.stream(0, 'synthetic-jpegs');
mkdirSync(path.join(dir, '0'), { recursive: true });
for (let i = 0; i < Number(count); i++) {
  const grid = Buffer.from(Array.from({ length: 7 * 7 * 3 }, () => rng.int(256)));
  await sharp(grid, { raw: { width: 7, height: 7, channels: 3 } }).resize(224, 224, { kernel: 'linear' }).jpeg({ quality: 90 }).toFile(path.join(dir, '0', `${String(i).padStart(4, '0')}.jpg`));
}
process.stderr.write(`wrote ${count} 224x224 JPEGs to ${path.join(dir, '0')}\n`);

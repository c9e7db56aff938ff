/**
 * Writes schemas/report.schema.json from the zod definitions in src/report/schema.ts.
 * Run after changing them: node --import tsx scripts/gen-schema.ts
 * (test/report.test.ts fails while the committed file and the definitions differ.)
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { schemaText } from '../src/report/schema.js';

const file = fileURLToPath(new URL('../schemas/report.schema.json', import.meta.url));
writeFileSync(file, schemaText());
process.stderr.write(`wrote ${file}\n`);

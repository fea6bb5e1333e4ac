import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse as parseYaml } from 'yaml';
import { configSections, renderConfigReference, type ReferenceRow } from '../../scripts/generate-config-reference.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const REFERENCE = join(ROOT, 'docs', 'configuration.md');
const EXAMPLE_CONFIG = join(ROOT, 'config', 'gantry.yaml');

/** Fails, naming the first line that differs, when the committed reference is not what the schema makes. */
function assertReferenceCurrent(committed: string, rendered: string): void {
  if (committed === rendered) return;
  const committedLines = committed.split('\n');
  const renderedLines = rendered.split('\n');
  let line = 0;
  while (line < committedLines.length && committedLines[line] === renderedLines[line]) line += 1;
  assert.fail(
    `docs/configuration.md is not what the config schema makes (first difference at line ${line + 1}: ` +
      `committed ${JSON.stringify(committedLines[line] ?? '(end of file)')}, ` +
      `generated ${JSON.stringify(renderedLines[line] ?? '(end of file)')}): run npm run generate:config-reference`,
  );
}

/** The rows of the reference's tables: key → [type, default, description]. */
function referenceRows(markdown: string): Map<string, string[]> {
  const rows = new Map<string, string[]>();
  for (const line of markdown.split('\n')) {
    const match = /^\| `([^`]+)` \|(.*)\|$/.exec(line);
    if (!match) continue;
    // Cells are split at pipes that are not escaped (\| stands for a pipe inside a cell).
    const cells = (match[2] as string).split(/(?<!\\)\|/).map((cellText) => cellText.trim().replace(/\\\|/g, '|'));
    rows.set(match[1] as string, cells);
  }
  return rows;
}

/** Every leaf key of a YAML config, as the reference names it (`[]` for each item of a list of objects). */
function leafKeys(value: unknown, prefix = ''): string[] {
  if (Array.isArray(value)) {
    const objects = value.filter((item) => typeof item === 'object' && item !== null && !Array.isArray(item));
    if (objects.length === 0) return [prefix];
    return [...new Set(objects.flatMap((item) => leafKeys(item, `${prefix}[]`)))];
  }
  if (typeof value === 'object' && value !== null) {
    return Object.entries(value).flatMap(([key, item]) => leafKeys(item, prefix === '' ? key : `${prefix}.${key}`));
  }
  return [prefix];
}

function assertDocumented(keys: readonly string[], rows: ReadonlyMap<string, string[]>): void {
  const missing = keys.filter((key) => !rows.has(key));
  assert.deepEqual(missing, [], `keys of config/gantry.yaml missing from docs/configuration.md: ${missing.join(', ')} (run npm run generate:config-reference)`);
}

/** Fails, naming them, when keys have no description (no .describe() in the schema and nothing checked). */
function assertDescribed(rows: readonly ReferenceRow[]): void {
  const undescribed = rows.filter((row) => row.description.trim() === '').map((row) => row.key);
  assert.deepEqual(undescribed, [], `keys without a description: ${undescribed.join(', ')} (add .describe() in src/config/schema.ts, then npm run generate:config-reference)`);
}

test('docs/configuration.md is what the config schema makes (else: run npm run generate:config-reference)', () => {
  const rendered = renderConfigReference();
  assert.equal(renderConfigReference(), rendered, 'the reference is deterministic');
  assertReferenceCurrent(readFileSync(REFERENCE, 'utf8'), rendered);
});

test('the reference starts by saying it is generated and by which command', () => {
  const firstLine = renderConfigReference().split('\n')[0] ?? '';
  assert.match(firstLine, /GENERATED/);
  assert.match(firstLine, /npm run generate:config-reference/);
});

test('every key of the example config/gantry.yaml is in the reference', () => {
  const keys = leafKeys(parseYaml(readFileSync(EXAMPLE_CONFIG, 'utf8')));
  assert.ok(keys.length > 40, `expected the example config's keys, got ${keys.length}`);
  assert.ok(keys.includes('forward.retry.baseSeconds'));
  assertDocumented(keys, referenceRows(renderConfigReference()));
});

test('known keys have their types and defaults', () => {
  const rows = referenceRows(renderConfigReference());
  const defaultOf = (key: string) => rows.get(key)?.[1];
  assert.equal(defaultOf('dicom.port'), '`11112`');
  assert.equal(defaultOf('http.port'), '`8080`');
  assert.equal(defaultOf('forward.stableSeconds'), '`30`');
  assert.equal(defaultOf('dicom.aeTitle'), '`GANTRY`');
  assert.equal(defaultOf('storage.retainOriginals'), '`7`', 'the default as written in a config file (days), not in milliseconds');
  assert.equal(defaultOf('deid.secret'), 'not set');
  assert.equal(defaultOf('forward.destinations[].name'), 'required');
  assert.equal(defaultOf('forward.destinations[].maxOperations'), '`16`');
  // Computed from the machine: the reference says so rather than carry this machine's count.
  assert.equal(defaultOf('deid.workers'), 'number of CPUs less one (at least 1)');
  assert.equal(rows.get('dicom.port')?.[0], 'integer (min 0, max 65535)');
  assert.equal(rows.get('forward.destinations[].port')?.[0], 'integer (min 1, max 65535)');
  assert.equal(rows.get('storage.duplicates')?.[0], 'one of `replace`, `keepFirst`');
  assert.match(rows.get('log.level')?.[0] ?? '', /`trace`/);
  assert.match(rows.get('dicom.port')?.[2] ?? '', /0 picks a free port/);
});

test('the checks fail on a stale reference and on an undocumented key', () => {
  const rendered = renderConfigReference();
  assert.throws(() => assertReferenceCurrent(rendered.replace('`11112`', '`104`'), rendered), /run npm run generate:config-reference/);
  assert.throws(() => assertReferenceCurrent(`${rendered}\nedited by hand\n`, rendered), /first difference at line/);
  const rows = referenceRows(rendered);
  rows.delete('forward.retry.maxAttempts');
  assert.throws(() => assertDocumented(['dicom.port', 'forward.retry.maxAttempts'], rows), /forward\.retry\.maxAttempts/);
});

test('every key has a description', () => {
  const rows = configSections().flatMap((section) => section.rows);
  assert.ok(rows.length > 40, `expected the schema's keys, got ${rows.length}`);
  assertDescribed(rows);
  // The check can fail: a key without a description is named.
  assert.throws(() => assertDescribed([...rows, { key: 'forward.newKey', type: 'string', default: 'not set', description: ' ' }]), /forward\.newKey/);
});

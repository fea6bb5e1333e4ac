/**
 * The library API as a package: what `import { openSession } from 'gantry'` gets in another project.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const manifest = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  exports: { '.': { types: string } };
  dependencies: Record<string, string>;
};

/** The bare modules the declarations reachable from `entry` import (node: built-ins left out). */
function importedPackages(entry: string): Set<string> {
  const packages = new Set<string>();
  const seen = new Set<string>();
  const queue = [entry];
  for (let file = queue.pop(); file !== undefined; file = queue.pop()) {
    if (seen.has(file)) continue;
    seen.add(file);
    for (const [, specifier] of readFileSync(file, 'utf8').matchAll(/(?:from|import\()\s*'([^']+)'/g)) {
      if (specifier === undefined || specifier.startsWith('node:')) continue;
      if (specifier.startsWith('.')) queue.push(resolve(dirname(file), specifier.replace(/\.js$/, '.d.ts')));
      else packages.add(specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : (specifier.split('/')[0] ?? specifier));
    }
  }
  return packages;
}

/** Whether an installed package carries its own declarations. */
function shipsTypes(name: string): boolean {
  // Not require.resolve: packages whose "exports" leave out package.json (piscina) would not answer.
  const packageFile = join(ROOT, 'node_modules', name, 'package.json');
  const own = JSON.parse(readFileSync(packageFile, 'utf8')) as { types?: string; typings?: string; exports?: unknown };
  return own.types !== undefined || own.typings !== undefined || JSON.stringify(own.exports ?? {}).includes('"types"') || existsSync(join(dirname(packageFile), 'index.d.ts'));
}

// Found in the session review: the declarations of Session and of the objects' context import
// better-sqlite3, whose types were a devDependency: a project installing Gantry gets no
// @types/better-sqlite3, and with skipLibCheck off its build fails in database.d.ts (TS7016).
test('every package the published declarations import is a dependency that brings its types', () => {
  const entry = join(ROOT, manifest.exports['.'].types);
  assert.ok(existsSync(entry), `${entry} is built`);
  const packages = importedPackages(entry);
  assert.ok(packages.size > 0);
  for (const name of packages) {
    assert.ok(name in manifest.dependencies, `${name} is imported by the declarations but is not a dependency`);
    const typesPackage = `@types/${name.replace(/^@/, '').replace('/', '__')}`;
    assert.ok(shipsTypes(name) || typesPackage in manifest.dependencies, `${name} ships no declarations and ${typesPackage} is not a dependency`);
  }
});

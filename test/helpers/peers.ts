/**
 * Real peers (DCMTK, Orthanc, dicom3tools, pydicom's sample files). A test that needs one that is
 * missing fails with a clear message when CI is set, and skips saying so elsewhere.
 */
import { existsSync } from 'node:fs';
import type { TestContext } from 'node:test';
import { have } from './processes.js';

/** Debian's python3-pydicom ships real sample files here. */
export const PYDICOM_TEST_FILES = '/usr/lib/python3/dist-packages/pydicom/data/test_files';
export const PYDICOM_CHARSET_FILES = '/usr/lib/python3/dist-packages/pydicom/data/charset_files';

const PACKAGE_OF: Record<string, string> = {
  storescu: 'dcmtk',
  storescp: 'dcmtk',
  echoscu: 'dcmtk',
  findscu: 'dcmtk',
  dcmdump: 'dcmtk',
  dciodvfy: 'dicom3tools',
  Orthanc: 'orthanc',
  [PYDICOM_TEST_FILES]: 'python3-pydicom',
  '/usr/bin/python3': 'python3',
  openssl: 'openssl',
  promtool: 'prometheus',
  '/usr/share/libdcmtk*/dicom.dic': 'dcmtk',
};

/**
 * Resolves true when every named program (or path) is present. Otherwise: under CI it throws (the
 * test fails and names the package); elsewhere it marks the test skipped and resolves false.
 */
export async function needPeers(t: TestContext, ...names: string[]): Promise<boolean> {
  const missing: string[] = [];
  for (const name of names) {
    const present = name.startsWith('/') ? existsSync(name) : await have(name);
    if (!present) missing.push(name);
  }
  if (missing.length === 0) return true;
  const packages = [...new Set(missing.map((name) => PACKAGE_OF[name] ?? name))];
  const message = `needs ${missing.join(', ')} (apt-get install ${packages.join(' ')})`;
  if (process.env.CI) throw new Error(`peer missing: ${message}`);
  t.skip(message);
  return false;
}

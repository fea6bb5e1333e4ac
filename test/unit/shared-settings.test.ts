/**
 * De-identification settings shared with the worker threads once per version
 * (src/deid/shared-settings.ts): what a worker reads back is what was shared, compiled once per
 * version, and a new version (a reloaded config) is read again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MessageChannel, receiveMessageOnPort } from 'node:worker_threads';
import { SettingsCache, shareSettings, type SharedSettings } from '../../src/deid/shared-settings.js';

/** The settings as a worker receives them: structured-cloned through a message port. */
function acrossThreads(shared: SharedSettings): SharedSettings {
  const { port1, port2 } = new MessageChannel();
  port1.postMessage(shared);
  const received = receiveMessageOnPort(port2)?.message as SharedSettings;
  port1.close();
  return received;
}

const base = { dateShift: { minDays: 30, maxDays: 60 }, maxAgeYears: 89, safePrivate: [{ creator: 'SIEMENS CSA HEADER', tag: '0029,xx08' }] };

test('a worker reads back the shared profiles and base settings, compiled once per version', () => {
  const shared = shareSettings([{ name: 'ct', when: { attributes: { Modality: 'CT' } }, options: ['retainSafePrivate'], rules: [] }, { name: 'default', options: [], rules: [] }], base as never);
  const cache = new SettingsCache();
  const first = cache.get(acrossThreads(shared));
  assert.deepEqual(first.base, base);
  assert.deepEqual(first.profiles.map((profile) => profile.name), ['ct', 'default']);
  assert.equal(cache.get(acrossThreads(shared)), first, 'the same version is not compiled again');
  assert.notEqual(first.passProfiles, first.profiles);
  assert.equal(first.passProfiles.length, first.profiles.length);
});

test('a new version of the settings replaces the one a worker had', () => {
  const cache = new SettingsCache();
  const before = cache.get(acrossThreads(shareSettings([{ name: 'default', options: [], rules: [] }], base as never)));
  const after = cache.get(acrossThreads(shareSettings([{ name: 'default', options: ['retainPatientCharacteristics'], rules: [] }], { ...base, maxAgeYears: 70 } as never)));
  assert.notEqual(after, before);
  assert.equal(after.base.maxAgeYears, 70);
});

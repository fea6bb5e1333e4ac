import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { stableStringOrder } from '../../src/db/string-order.js';

/** The order stableStringOrder must give: JavaScript's `<` on the keys, ties in input order. */
function comparisonOrder(keys: readonly string[]): number[] {
  return keys.map((_, index) => index).sort((a, b) => {
    const x = keys[a] as string;
    const y = keys[b] as string;
    return x < y ? -1 : x > y ? 1 : a - b;
  });
}

/** A deterministic generator (mulberry32), so that a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed;
  return () => {
    state = (state + 0x6d2b79f5) | 0;
    let t = Math.imul(state ^ (state >>> 15), 1 | state);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Keys with long shared prefixes, prefixes of each other, empty ones, duplicates, and code units
 * from 256 up: Latin-1 letters, Greek, a CJK ideograph, a character of the private use area
 * (U+E000) and an astral one (a surrogate pair). */
function keys(count: number, seed: number): string[] {
  const next = random(seed);
  const alphabet = ['0', '1', '9', 'A', 'Z', '^', 'a', 'z', ' ', '\u00e9', '\u00ff', '\u0100', '\u03a9', '\u6f22', '\ue000', '\u{1f600}'];
  const prefixes = ['', '1.2.840.10008.', 'HOSPITAL-A^', 'Doe^'];
  const made: string[] = [];
  for (let i = 0; i < count; i += 1) {
    if (made.length > 0 && next() < 0.2) {
      made.push(made[Math.floor(next() * made.length)] as string); // a duplicate
      continue;
    }
    let key = prefixes[Math.floor(next() * prefixes.length)] as string;
    const length = Math.floor(next() * 12);
    for (let j = 0; j < length; j += 1) key += alphabet[Math.floor(next() * (next() < 0.9 ? 9 : alphabet.length))];
    made.push(key);
  }
  return made;
}

describe('stableStringOrder', () => {
  it('orders as JavaScript compares strings, equal keys in input order, through every kind of pass', () => {
    for (const [count, seed] of [[5_000, 1], [20_000, 2], [300, 3]] as const) {
      const input = keys(count, seed);
      assert.ok(input.some((key) => key.length === 0) && new Set(input).size < input.length, 'the input has empty keys and duplicates');
      assert.deepEqual(Array.from(stableStringOrder(input)), comparisonOrder(input), `${count} keys, seed ${seed}`);
    }
  });

  it('orders keys that differ only in their last code unit, past the first pass', () => {
    // 1,000 keys sharing 40 characters: a radix pass per shared character, then one that splits.
    const input = Array.from({ length: 1_000 }, (_, i) => `${'1.2.826.0.1.3680043.9.7433.1.1234567890.'}${String((i * 7919) % 1000).padStart(3, '0')}`);
    assert.deepEqual(Array.from(stableStringOrder(input)), comparisonOrder(input));
  });

  it('orders many keys in scripts beyond Latin-1 (the comparison bucket), past a shared first character', () => {
    const input = Array.from({ length: 200 }, (_, i) => `\u5c71${String.fromCharCode(0x4e00 + ((i * 37) % 50))}${i % 3 === 0 ? '' : '\u7530'}`);
    assert.deepEqual(Array.from(stableStringOrder(input)), comparisonOrder(input));
  });

  it('keeps the input order of many equal keys (stable), and handles no keys and one key', () => {
    const input = Array.from({ length: 500 }, (_, i) => (i % 2 === 0 ? 'PatientName' : 'PatientID'));
    const order = Array.from(stableStringOrder(input));
    assert.deepEqual(order, [...input.keys()].filter((i) => i % 2 === 1).concat([...input.keys()].filter((i) => i % 2 === 0)));
    assert.deepEqual(Array.from(stableStringOrder([])), []);
    assert.deepEqual(Array.from(stableStringOrder(['x'])), [0]);
  });
});

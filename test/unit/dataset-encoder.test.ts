/** Small text datasets (C-FIND identifiers and responses) encoded and read back by Gantry's parser. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { encodeTextDataset } from '../../src/dicom/dataset-encoder.js';
import { BufferSource, parseDataset } from '../../src/dicom/dataset-tree.js';

for (const encoding of ['implicit-le', 'explicit-le'] as const) {
  test(`text, UIDs, numbers and empty sequences round-trip in ${encoding}`, () => {
    const bytes = encodeTextDataset(
      [
        { tag: 0x0020000d, value: '1.2.3' },
        { tag: 0x00080005, value: 'ISO_IR 192' },
        { tag: 0x00100010, value: 'Müller^Jörg' },
        { tag: 0x00080052, value: 'STUDY' },
        { tag: 0x00081032, value: [] },
        { tag: 0x00280010, value: '512' },
        { tag: 0x00201208, value: '' },
      ],
      encoding,
    );
    const elements = parseDataset(new BufferSource(bytes), encoding);
    assert.deepEqual(
      elements.map((element) => element.tag),
      [0x00080005, 0x00080052, 0x00081032, 0x00100010, 0x0020000d, 0x00201208, 0x00280010],
      'sorted by tag',
    );
    const value = (tag: number) => elements.find((element) => element.tag === tag)?.value as Buffer;
    assert.equal(value(0x0020000d).toString('latin1'), '1.2.3\0', 'UI padded with NUL');
    assert.equal(value(0x00080052).toString('latin1'), 'STUDY ', 'text padded with a space');
    assert.equal(value(0x00100010).toString('utf8').trim(), 'Müller^Jörg', 'UTF-8 under ISO_IR 192');
    assert.equal(value(0x00280010).readUInt16LE(0), 512, 'US in binary');
    assert.equal(value(0x00201208).length, 0, 'an empty return key');
    assert.deepEqual(elements.find((element) => element.tag === 0x00081032)?.items ?? [], [], 'an empty sequence');
  });
}

/**
 * JPEG frames cleaned of their metadata still decode to the same samples: real files of pydicom's test
 * set, changed as a device or a writer might have, decoded by GDCM before and after.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';
import { jpegMetadataIn } from '../../src/pixels/jpeg-metadata.js';
import { needPeers, PYDICOM_TEST_FILES } from '../helpers/peers.js';
import { deidentifyPassingPixels, firstFrame, gdcmDecoded, noNewErrors } from '../helpers/pixel-checks.js';
import { withFrames } from '../helpers/pixel-images.js';
import { scratchDir } from '../helpers/scratch.js';

// Found by the review helper: SC_rgb_jpeg_dcmtk.dcm with a comment in place of its EOI decodes with
// gdcmconv, and the comment left; taken out, the scan data were the stream's last bytes, which gdcmconv
// does not decode. Cleaned, the stream now ends with an EOI.
test('a JPEG frame with a comment in place of its EOI leaves without it, decoding to the same samples', async (t) => {
  if (!(await needPeers(t, PYDICOM_TEST_FILES, 'gdcmconv'))) return;
  const dir = scratchDir('pixel-jpeg-metadata');
  const input = join(PYDICOM_TEST_FILES, 'SC_rgb_jpeg_dcmtk.dcm');
  const stream = firstFrame(input);
  const end = stream.lastIndexOf(Buffer.from([0xff, 0xd9]));
  const comment = Buffer.concat([Buffer.from([0xff, 0xfe, 0, 18]), Buffer.from('Patient Doe^John', 'latin1')]);
  const sourced = join(dir, 'named.dcm');
  withFrames(input, sourced, [Buffer.concat([stream.subarray(0, end), comment])]);
  const output = join(dir, 'out.dcm');
  deidentifyPassingPixels(sourced, output, dir);
  const frame = firstFrame(output);
  assert.equal(frame.indexOf('Doe^John', 0, 'latin1'), -1, 'no name left in the frame');
  assert.equal(jpegMetadataIn(frame), 'none');
  assert.deepEqual(await gdcmDecoded(output, join(dir, 'decoded-out.dcm')), await gdcmDecoded(input, join(dir, 'decoded-in.dcm')));
  await noNewErrors(sourced, output);
});

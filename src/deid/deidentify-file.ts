/**
 * De-identifies one Part 10 file into a new file (the original is never modified): parse the element
 * tree, let the engine mark its edits, write a new File Meta Information and the dataset element by
 * element. Deflated datasets are inflated, de-identified and deflated again, so the transfer syntax
 * never changes.
 */
import { closeSync, fsyncSync, openSync, readFileSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { BufferSource, parseDataset, parseFile, type ByteSource, type ElementNode } from '../dicom/dataset-tree.js';
import { DatasetWriter, type EditableElement } from '../dicom/dataset-writer.js';
import { encodePart10Header, readFileMeta } from '../dicom/part10.js';
import { findTransferSyntax, type DatasetEncoding } from '../dicom/transfer-syntaxes.js';
import { trimUid } from '../dicom/values.js';
import { DeidEngine, type DeidOutcome, type DeidSettings } from './engine.js';
import type { Pseudonymizer } from './pseudonyms.js';

export interface DeidentifyFileOptions {
  settings: DeidSettings;
  pseudonyms: Pseudonymizer;
  /** Sync the output before returning (the pipeline does; dry runs need not). */
  sync?: boolean;
}

export function deidentifyFile(input: string, output: string, options: DeidentifyFileOptions): DeidOutcome {
  const opened = openDataset(input);
  try {
    const engine = new DeidEngine(options.settings, options.pseudonyms, opened.source, opened.encoding === 'explicit-be');
    const outcome = engine.run(opened.elements as EditableElement[], opened.sopInstanceUid);
    const header = encodePart10Header({
      mediaStorageSopClassUid: opened.sopClassUid,
      mediaStorageSopInstanceUid: outcome.sopInstanceUid,
      transferSyntaxUid: opened.transferSyntaxUid,
    });
    const temporary = `${output}.partial`;
    const fd = openSync(temporary, 'w', 0o640);
    try {
      writeSync(fd, header);
      const emit = (bytes: Buffer) => writeAll(fd, bytes);
      if (opened.deflated) {
        const chunks: Buffer[] = [];
        new DatasetWriter(opened.source, 'explicit-le', (bytes) => chunks.push(bytes)).writeElements(opened.elements);
        emit(deflateRawSync(Buffer.concat(chunks)));
      } else {
        new DatasetWriter(opened.source, opened.encoding, emit).writeElements(opened.elements);
      }
      if (options.sync) fsyncSync(fd);
    } catch (error) {
      closeSync(fd);
      unlinkSync(temporary);
      throw error;
    }
    closeSync(fd);
    renameSync(temporary, output);
    return outcome;
  } finally {
    opened.close();
  }
}

function writeAll(fd: number, bytes: Buffer): void {
  let done = 0;
  while (done < bytes.length) done += writeSync(fd, bytes, done, bytes.length - done);
}

interface OpenedDataset {
  elements: ElementNode[];
  source: ByteSource;
  encoding: Exclude<DatasetEncoding, 'deflated-explicit-le'>;
  transferSyntaxUid: string;
  sopClassUid: string;
  sopInstanceUid: string;
  deflated: boolean;
  close(): void;
}

function openDataset(input: string): OpenedDataset {
  const meta = readFileMeta(readHead(input));
  const transferSyntaxUid = trimUid(meta.elements.get(0x0010)?.toString('latin1') ?? '');
  const sopClassUid = trimUid(meta.elements.get(0x0002)?.toString('latin1') ?? '');
  const sopInstanceUid = trimUid(meta.elements.get(0x0003)?.toString('latin1') ?? '');
  const syntax = findTransferSyntax(transferSyntaxUid);
  if (syntax?.encoding === 'deflated-explicit-le') {
    // Deflated objects are small (their pixel data is not encapsulated): inflate in memory.
    const whole = readFileSync(input);
    const source = new BufferSource(inflateRawSync(whole.subarray(meta.datasetOffset)));
    return { elements: parseDataset(source, 'explicit-le'), source, encoding: 'explicit-le', transferSyntaxUid, sopClassUid, sopInstanceUid, deflated: true, close: () => undefined };
  }
  const parsed = parseFile(input);
  return {
    elements: parsed.elements,
    source: parsed.source,
    encoding: parsed.encoding as Exclude<DatasetEncoding, 'deflated-explicit-le'>,
    transferSyntaxUid,
    sopClassUid,
    sopInstanceUid,
    deflated: false,
    close: parsed.close,
  };
}

/** The first 64 KiB of a file: enough for any File Meta Information. */
function readHead(path: string): Buffer {
  const fd = openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(64 * 1024);
    const got = readSync(fd, buffer, 0, buffer.length, 0);
    return buffer.subarray(0, got);
  } finally {
    closeSync(fd);
  }
}

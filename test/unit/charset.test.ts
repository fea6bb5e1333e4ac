import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decodeText, parseSpecificCharacterSet } from '../../src/dicom/charset.js';

const bytes = (text: string) => Buffer.from(text, 'latin1');

// Person names of PS3.5 Annexes H, I and J (the values of pydicom's charset_files/FileInfo.txt).
const CASES: Array<[string, string, string]> = [
  ['ISO_IR 100', 'Buc^J\xe9r\xf4me', 'Buc^Jérôme'],
  ['ISO_IR 144', '\xbb\xee\xdace\xdc\xd1yp\xd3', 'Люкceмбypг'],
  ['ISO_IR 126', '\xc4\xe9\xef\xed\xf5\xf3\xe9\xef\xf2', 'Διονυσιος'],
  ['ISO_IR 138', '\xf9\xf8\xe5\xef^\xe3\xe1\xe5\xf8\xe4', 'שרון^דבורה'],
  ['ISO_IR 127', '\xe2\xc8\xc7\xe6\xea^\xe4\xe6\xd2\xc7\xd1', 'قباني^لنزار'],
  ['\\ISO 2022 IR 87', 'Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B=\x1b$B$d$^$@\x1b(B^\x1b$B$?$m$&\x1b(B', 'Yamada^Tarou=山田^太郎=やまだ^たろう'],
  ['ISO 2022 IR 13\\ISO 2022 IR 87', '\xd4\xcf\xc0\xde^\xc0\xdb\xb3=\x1b$B;3ED\x1b(J^\x1b$BB@O:\x1b(J=\x1b$B$d$^$@\x1b(J^\x1b$B$?$m$&\x1b(J', 'ﾔﾏﾀﾞ^ﾀﾛｳ=山田^太郎=やまだ^たろう'],
  ['\\ISO 2022 IR 149', 'Hong^Gildong=\x1b$)C\xfb\xf3^\x1b$)C\xd1\xce\xd4\xd7=\x1b$)C\xc8\xab^\x1b$)C\xb1\xe6\xb5\xbf', 'Hong^Gildong=洪^吉洞=홍^길동'],
  ['ISO_IR 192', Buffer.from('Wang^XiaoDong=王^小東=', 'utf8').toString('latin1'), 'Wang^XiaoDong=王^小東='],
  ['GB18030', 'Wang^XiaoDong=\xcd\xf5^\xd0\xa1\xb6\xab=', 'Wang^XiaoDong=王^小东='],
];

for (const [charset, raw, expected] of CASES) {
  test(`decodes a person name in ${charset || 'the default repertoire'}`, () => {
    assert.equal(decodeText(bytes(raw), parseSpecificCharacterSet(charset), true), expected);
  });
}

test('ISO_IR 100 is true Latin-1, not windows-1252', () => {
  assert.equal(decodeText(Buffer.from([0x80, 0xe9]), ['ISO_IR 100']), '\u0080é');
});

test('no Specific Character Set means the default repertoire', () => {
  assert.deepEqual(parseSpecificCharacterSet(undefined), ['']);
  assert.equal(decodeText(bytes('DOE^JOHN'), ['']), 'DOE^JOHN');
});

// Found in a review: PS3.5 6.1.2.5.3 makes the character sets of Specific Character Set value 1 active
// again at the end of each value (the "\" delimiter) as before "^" and "=" in a name; the decoder
// carried a designation of one value into the next, so "ESC - F Greek \ Müller" read Müller in Greek.
test('each value of a multi-valued element starts in the initial character sets (ISO 2022)', () => {
  const charsets = parseSpecificCharacterSet('ISO 2022 IR 100\\ISO 2022 IR 126');
  const names = bytes('\x1b-F\xc4\xe9\xef\\M\xfcller^Hans');
  assert.equal(decodeText(names, charsets, true), 'Διο\\Müller^Hans', 'a person name');
  assert.equal(decodeText(bytes('\x1b-F\xc4\xe9\xef\\M\xfcller'), charsets, false, true), 'Διο\\Müller', 'a multi-valued LO');
  assert.equal(decodeText(bytes('\x1b-F\xc4\xe9\xef\\\xc4'), charsets), 'Διο\\Δ', 'LT, ST and UT have one value: a backslash is text');
  // In a two-byte G0 a 5C byte is half a character (本 is 4B 5C), never a delimiter.
  assert.equal(decodeText(bytes('\x1b$B;3K\\\x1b(B'), parseSpecificCharacterSet('\\ISO 2022 IR 87'), true), '山本');
});

// Found in the robustness review: each ESC was compared with the 18 escape sequences by making a
// string of the bytes after it for each; a value of 64 KiB of ESC bytes (the receive path decodes
// indexed attributes on the main thread) took 250 ms.
test('a value of ESC bytes that start no known escape sequence decodes without a string per sequence tried', () => {
  const storm = Buffer.concat([Buffer.alloc(65532, 0x1b), Buffer.from('(B', 'latin1')]);
  const toString = Buffer.prototype.toString;
  let made = 0;
  Buffer.prototype.toString = function (this: Buffer, ...args: Parameters<Buffer['toString']>) {
    made += 1;
    return toString.apply(this, args);
  } as Buffer['toString'];
  let decoded: string;
  try {
    decoded = decodeText(storm, ['ISO 2022 IR 87', 'ISO 2022 IR 159'], true);
  } finally {
    Buffer.prototype.toString = toString;
  }
  assert.equal(decoded, '', 'unknown escapes are dropped; the last switches G0 to ASCII');
  assert.ok(made < 100, `${made} strings made`);
});

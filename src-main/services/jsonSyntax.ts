// Where and why a JSON text is malformed, in our own words (docs/fuzzing.md): the engine's JSON.parse message
// quotes the text around the fault, raw control characters included, and says where only for some faults. For
// files a user picked, the message must name the place (line, column, and the top-level array element: a
// dataset's row) and must not paste the file's content. JSON.parse still does the parsing; this scan only runs on
// text it refused, and walks RFC 8259's grammar up to the first fault.
import { printable } from './messageText';

export interface JsonSyntaxFault {
  /** Offset in the text (UTF-16 units) of the fault. */
  offset: number;
  line: number;
  column: number;
  /** 1-based element of the top-level array the fault lies in, when the text is an array. */
  element: number | null;
  reason: string;
}

class Fault extends Error {
  constructor(
    readonly at: number,
    readonly reason: string,
  ) {
    super(reason);
  }
}

/** Scans `text` (already refused by JSON.parse) for its first fault; null if the scan finds none. */
export function findJsonFault(text: string): JsonSyntaxFault | null {
  let pos = 0;
  let element: number | null = null;
  const ws = () => {
    while (pos < text.length && ' \t\n\r'.includes(text[pos]!)) pos++;
  };
  const char = () => (pos < text.length ? `character ${printable(text[pos]!)}` : 'end of the text');
  const fail = (reason: string): never => {
    throw new Fault(pos, reason);
  };
  const expect = (c: string, what: string) => (text[pos] === c ? pos++ : fail(`expected ${what}, found ${char()}`));

  const string = () => {
    pos++; // the opening quote
    for (;;) {
      if (pos >= text.length) fail('unterminated string');
      const c = text.charCodeAt(pos);
      if (c === 0x22) return void pos++;
      if (c < 0x20) fail(`control character ${printable(text[pos]!)} inside a string (write it as an escape)`);
      if (c !== 0x5c) {
        pos++;
        continue;
      }
      const e = text[pos + 1];
      if (e !== undefined && '"\\/bfnrt'.includes(e)) pos += 2;
      else if (e === 'u' && /^[0-9a-fA-F]{4}$/.test(text.slice(pos + 2, pos + 6))) pos += 6;
      else fail('invalid escape in a string');
    }
  };
  const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;
  const number = () => {
    NUMBER.lastIndex = pos;
    const m = NUMBER.exec(text);
    if (!m) fail('invalid number');
    pos += m![0].length;
  };
  const value = (depth: number): void => {
    ws();
    // JSON.parse takes any depth; this scan recurses, so it stops (with a fault of its own) well before the stack does.
    if (depth > 2000) fail('values nested deeper than 2000 levels');
    const c = text[pos];
    if (c === '{') {
      pos++;
      ws();
      if (text[pos] === '}') return void pos++;
      for (;;) {
        ws();
        if (text[pos] !== '"') fail(`expected a property name in double quotes, found ${char()}`);
        string();
        ws();
        expect(':', "':' after a property name");
        value(depth + 1);
        ws();
        if (text[pos] === ',') pos++;
        else return void expect('}', "',' or '}' after a property value");
      }
    }
    if (c === '[') {
      pos++;
      ws();
      if (text[pos] === ']') return void pos++;
      for (let i = 1; ; i++) {
        if (depth === 0) element = i;
        value(depth + 1);
        ws();
        if (text[pos] === ',') pos++;
        else return void expect(']', "',' or ']' after an array element");
      }
    }
    if (c === '"') return string();
    if (c === '-' || (c !== undefined && c >= '0' && c <= '9')) return number();
    for (const word of ['true', 'false', 'null']) if (text.startsWith(word, pos)) return void (pos += word.length);
    fail(`unexpected ${char()}`);
  };

  try {
    value(0);
    ws();
    if (pos < text.length) {
      element = null;
      fail(`unexpected ${char()} after the end of the JSON value`);
    }
    return null;
  } catch (e) {
    if (!(e instanceof Fault)) throw e;
    const before = text.slice(0, e.at);
    const line = before.split('\n').length;
    return { offset: e.at, line, column: e.at - before.lastIndexOf('\n'), element, reason: e.reason };
  }
}

/** "at line L, column C: reason" for a text JSON.parse refused (never the text itself). */
export function describeJsonFault(text: string): string {
  const f = findJsonFault(text);
  return f ? `at line ${f.line}, column ${f.column}: ${f.reason}` : 'the text is not JSON';
}

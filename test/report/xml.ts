/**
 * A small XML well-formedness checker for the report tests: balanced and properly nested tags,
 * quoted attributes without duplicates, no stray "<", and only the five predefined or numeric
 * entities. Throws with the offset and a snippet on the first problem.
 */
const NAME = '[A-Za-z_][A-Za-z0-9_.:-]*';
const ATTR = new RegExp(`\\s+(${NAME})\\s*=\\s*("[^"<]*"|'[^'<]*')`, 'y');
const OPEN = new RegExp(`<(${NAME})`, 'y');
const CLOSE = new RegExp(`</(${NAME})\\s*>`, 'y');
const ENTITY = /&(?!(?:amp|lt|gt|quot|apos|#[0-9]+|#x[0-9A-Fa-f]+);)/;

function fail(doc: string, at: number, what: string): never {
  throw new Error(`not well-formed XML at ${at}: ${what}: …${doc.slice(Math.max(0, at - 60), at + 60)}…`);
}

function checkText(doc: string, from: number, to: number): void {
  const text = doc.slice(from, to);
  const bad = ENTITY.exec(text);
  if (bad) fail(doc, from + bad.index, 'a bare "&"');
}

/** Returns the names of the elements seen, in document order. */
export function checkXml(doc: string): string[] {
  const stack: string[] = [];
  const seen: string[] = [];
  let i = 0;
  let roots = 0;
  while (i < doc.length) {
    const lt = doc.indexOf('<', i);
    checkText(doc, i, lt < 0 ? doc.length : lt);
    if (lt < 0) break;
    if (doc.startsWith('<!--', lt)) {
      const end = doc.indexOf('-->', lt + 4);
      if (end < 0) fail(doc, lt, 'an unterminated comment');
      i = end + 3;
      continue;
    }
    if (doc.startsWith('<!DOCTYPE', lt) || doc.startsWith('<?', lt)) {
      if (stack.length > 0 || roots > 0) fail(doc, lt, 'a declaration inside the document');
      const end = doc.indexOf('>', lt);
      if (end < 0) fail(doc, lt, 'an unterminated declaration');
      i = end + 1;
      continue;
    }
    CLOSE.lastIndex = lt;
    const close = CLOSE.exec(doc);
    if (close) {
      const open = stack.pop();
      if (open !== close[1]) fail(doc, lt, `</${close[1]}> closes <${open ?? 'nothing'}>`);
      i = CLOSE.lastIndex;
      continue;
    }
    OPEN.lastIndex = lt;
    const open = OPEN.exec(doc);
    if (!open) fail(doc, lt, 'a "<" that starts no tag');
    if (stack.length === 0) roots++;
    if (roots > 1) fail(doc, lt, 'a second root element');
    let j = OPEN.lastIndex;
    const names = new Set<string>();
    for (;;) {
      ATTR.lastIndex = j;
      const a = ATTR.exec(doc);
      if (!a) break;
      if (names.has(a[1])) fail(doc, j, `attribute ${a[1]} twice`);
      names.add(a[1]);
      checkText(doc, j, ATTR.lastIndex);
      j = ATTR.lastIndex;
    }
    while (/\s/.test(doc[j] ?? '')) j++;
    seen.push(open[1]);
    if (doc.startsWith('/>', j)) i = j + 2;
    else if (doc[j] === '>') {
      stack.push(open[1]);
      i = j + 1;
    } else fail(doc, j, `a malformed <${open[1]}> tag`);
  }
  if (stack.length > 0) fail(doc, doc.length, `<${stack[stack.length - 1]}> never closed`);
  if (roots !== 1) fail(doc, 0, `${roots} root elements`);
  return seen;
}

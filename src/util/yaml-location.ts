import { LineCounter, parseDocument, isMap, isPair, isScalar, type Document, type Node } from 'yaml';

/** A parsed YAML file that can say on which line a key path stands (for error messages). */
export type LocatedDocument = {
  doc: Document.Parsed;
  /** 1-based line of the node at `path`, or of its nearest existing ancestor. */
  lineOf(path: readonly PropertyKey[]): number;
};

/** Parses `text` keeping positions; YAML syntax errors are in `doc.errors`. */
export function parseLocated(text: string): LocatedDocument {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, uniqueKeys: true, prettyErrors: true });
  const lineOf = (path: readonly PropertyKey[]): number => {
    for (let n = path.length; n >= 0; n--) {
      const at = nodeAt(doc, path.slice(0, n));
      if (at?.range) return lineCounter.linePos(at.range[0]).line;
    }
    return 1;
  };
  return { doc, lineOf };
}

// Walks maps and sequences by key or index; for a map key it returns the key's
// node so that the line shown is the line where the key is written.
function nodeAt(doc: Document.Parsed, path: readonly PropertyKey[]): Node | null {
  let node: unknown = doc.contents;
  let keyNode: unknown = null;
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && p.key.value === key);
      if (!pair) return null;
      keyNode = pair.key;
      node = pair.value;
    } else if (node && typeof node === 'object' && 'items' in node && typeof key === 'number') {
      const item = (node as { items: unknown[] }).items[key];
      if (item === undefined) return null;
      keyNode = item;
      node = item;
    } else {
      return null;
    }
  }
  return (keyNode ?? node) as Node | null;
}

/** The first line of a yaml library error, without its own position suffix. */
export function yamlErrorText(message: string): string {
  return (message.split('\n')[0] ?? message).replace(/ at line \d+, column \d+:?$/, '');
}

// Copying from a highlighted diff (issue 12 item 15): the colours do not survive a paste, so removed and added runs
// are marked in the copied text the way `git diff --word-diff` does: [-removed-] and {+added+}.

const MARK = { removed: ['[-', '-]'], added: ['{+', '+}'] } as const

function kindOf(node: Node | null): 'removed' | 'added' | null {
  const el = node instanceof Element ? node : (node?.parentElement ?? null)
  const part = el?.closest('.removed, .added')
  return part ? (part.classList.contains('removed') ? 'removed' : 'added') : null
}

/** The plain text of a selection inside the diff, with each removed / added run marked. */
export function markedSelectionText(range: Range): string {
  // A selection inside one part: cloneContents gives bare text, so the part is found from the range itself.
  const inside = kindOf(range.commonAncestorContainer)
  if (inside) return `${MARK[inside][0]}${range.toString()}${MARK[inside][1]}`
  let out = ''
  for (const node of Array.from(range.cloneContents().childNodes)) {
    const kind =
      node instanceof Element && node.classList.contains('removed')
        ? 'removed'
        : node instanceof Element && node.classList.contains('added')
          ? 'added'
          : null
    out += kind ? `${MARK[kind][0]}${node.textContent ?? ''}${MARK[kind][1]}` : (node.textContent ?? '')
  }
  return out
}

// Path comparison in the renderer (no Node path module): separators unified, trailing separators dropped, and
// case ignored on Windows-style paths.

export function normPath(p: string): string {
  let s = p.trim().replace(/\\/g, '/')
  while (s.length > 1 && s.endsWith('/')) s = s.slice(0, -1)
  return /^[A-Za-z]:/.test(s) ? s.toLowerCase() : s
}

export function samePath(a: string | null | undefined, b: string | null | undefined): boolean {
  return !!a && !!b && normPath(a) === normPath(b)
}

/** Whether `child` is `dir` or lies inside it. */
export function insidePath(child: string | null | undefined, dir: string | null | undefined): boolean {
  if (!child || !dir) return false
  const c = normPath(child)
  const d = normPath(dir)
  return c === d || c.startsWith(d.endsWith('/') ? d : `${d}/`)
}

// The import rules of docs/architecture.md#shared-contract, read from the source files themselves so they cannot
// drift: src-shared is pure (zod and its own files only), the renderer reaches main only through src-shared, main
// imports src-shared by relative path (the CLI runs under tsx from any directory, where the @shared alias does not
// apply), and nothing the renderer bundle loads pulls in the Jinja runtime, the tokenizer library or Node.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { repoRoot } from '../helpers/sharedPath'

const SHARED = path.join(repoRoot, 'src-shared')
const RENDERER = path.join(repoRoot, 'src-renderer', 'src')
const MAIN = path.join(repoRoot, 'src-main')

/** Every .ts / .vue file under a folder. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .map((f) => path.join(dir, f))
    .filter((f) => /\.(ts|vue)$/.test(f) && statSync(f).isFile())
}

/** Module specifiers of static imports, re-exports, side-effect imports and import() types or calls. */
function specifiers(file: string): string[] {
  const text = readFileSync(file, 'utf8')
  const found: string[] = []
  for (const m of text.matchAll(/(?:\bfrom\s+|\bimport\s*\(\s*|^\s*import\s+)(['"])([^'"]+)\1/gm)) found.push(m[2]!)
  return found
}

/** The file a relative or @shared specifier names, or null for a package. */
function resolveLocal(from: string, spec: string): string | null {
  let base: string
  if (spec.startsWith('@shared/')) base = path.join(SHARED, spec.slice('@shared/'.length))
  else if (spec.startsWith('.')) base = path.resolve(path.dirname(from), spec)
  else return null
  for (const candidate of [base, `${base}.ts`, path.join(base, 'index.ts')]) {
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate
  }
  throw new Error(`${path.relative(repoRoot, from)}: cannot resolve import '${spec}'`)
}

const inside = (dir: string, file: string): boolean => !path.relative(dir, file).startsWith('..')

describe('import boundaries', () => {
  it('src-shared imports only zod and its own files', () => {
    const bad: string[] = []
    for (const file of sourceFiles(SHARED)) {
      for (const spec of specifiers(file)) {
        const local = resolveLocal(file, spec)
        const ok = local === null ? spec === 'zod' : inside(SHARED, local)
        if (!ok) bad.push(`${path.relative(repoRoot, file)}: ${spec}`)
      }
    }
    expect(bad).toEqual([])
  })

  it('the renderer never imports src-main', () => {
    const bad = sourceFiles(RENDERER).flatMap((file) =>
      specifiers(file)
        .filter((spec) => {
          const local = resolveLocal(file, spec)
          return local !== null && inside(MAIN, local)
        })
        .map((spec) => `${path.relative(repoRoot, file)}: ${spec}`),
    )
    expect(bad).toEqual([])
  })

  it('main imports src-shared by relative path, not through the @shared alias', () => {
    const bad = sourceFiles(MAIN).flatMap((file) =>
      specifiers(file)
        .filter((spec) => spec.startsWith('@shared/'))
        .map((spec) => `${path.relative(repoRoot, file)}: ${spec}`),
    )
    expect(bad).toEqual([])
  })

  it('nothing the renderer loads reaches the Jinja runtime, the tokenizer library or Node', () => {
    const packages = new Set<string>()
    const seen = new Set<string>()
    const queue = [path.join(RENDERER, 'main.ts')]
    while (queue.length > 0) {
      const file = queue.pop()!
      if (seen.has(file)) continue
      seen.add(file)
      for (const spec of specifiers(file)) {
        const local = resolveLocal(file, spec)
        if (local === null) packages.add(spec)
        else queue.push(local)
      }
    }
    // The walk really covers the app: the views and the shared contract.
    expect(seen.size).toBeGreaterThan(50)
    expect(seen.has(path.join(SHARED, 'api', 'contract.ts'))).toBe(true)
    const forbidden = [...packages].filter((p) => p.startsWith('node:') || p.startsWith('@huggingface/'))
    expect(forbidden).toEqual([])
    expect([...seen].filter((f) => inside(MAIN, f)).map((f) => path.relative(repoRoot, f))).toEqual([])
  })
})

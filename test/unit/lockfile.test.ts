// package-lock.json must hold every platform's optional packages (rollup's, esbuild's per-OS/CPU binaries), or
// `npm ci` refuses it ("Missing: @rollup/rollup-darwin-arm64 from lock file") and macOS/Windows users cannot install
// from it. docs/decisions.md ("Lock file") says how the lock is regenerated.
import { readFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { repoRoot } from '../helpers/sharedPath'

interface LockEntry {
  version?: string
  optionalDependencies?: Record<string, string>
  dependencies?: Record<string, string>
  os?: string[]
  cpu?: string[]
}

const lock = JSON.parse(readFileSync(path.join(repoRoot, 'package-lock.json'), 'utf8')) as {
  lockfileVersion: number
  packages: Record<string, LockEntry>
}

/** Where node would find `dep` from the package at `at` (its own node_modules, then each parent's, then the root's). */
function resolveInLock(at: string, dep: string): string | null {
  let base = at
  for (;;) {
    const candidate = base === '' ? `node_modules/${dep}` : `${base}/node_modules/${dep}`
    if (lock.packages[candidate]) return candidate
    if (base === '') return null
    const cut = base.lastIndexOf('/node_modules/')
    base = cut < 0 ? '' : base.slice(0, cut)
  }
}

describe('package-lock.json', () => {
  it('lists every optional dependency of every locked package, for every platform (npm ci needs them)', () => {
    expect(lock.lockfileVersion).toBeGreaterThanOrEqual(2)
    const missing: string[] = []
    for (const [at, entry] of Object.entries(lock.packages)) {
      for (const dep of Object.keys(entry.optionalDependencies ?? {})) {
        if (!resolveInLock(at, dep)) missing.push(`${dep} (optional dependency of ${at || 'the root'})`)
      }
    }
    expect(missing).toEqual([])
  })

  it('holds the native builds for macOS, Windows and Linux arm64 as well as this machine', () => {
    for (const name of [
      '@rollup/rollup-darwin-arm64',
      '@rollup/rollup-win32-x64-msvc',
      '@rollup/rollup-linux-arm64-gnu',
      '@esbuild/darwin-x64',
      '@esbuild/win32-x64',
    ]) {
      expect(lock.packages[`node_modules/${name}`], name).toBeDefined()
    }
  })
})

// `npm run fuzz`: every parser of user files fuzzed for a bounded time (docs/fuzzing.md), native targets with
// libFuzzer, TypeScript targets with our coverage-guided mutation fuzzer; prints a table and writes
// build/fuzz/fuzz-results.json. Inputs that break a property are minimized into the committed regression corpora
// (native/fuzz/regressions, test/fuzz/regressions) that npm test replays. Not part of npm test.
//
// Environment: FUZZ_SECONDS (per target, default 60), FUZZ_TARGETS (comma-separated names, default all),
// FUZZ_SEED (default 1), FUZZ_NATIVE=0 / FUZZ_JS=0 (skip a half), FUZZ_EXEC_TIMEOUT_MS (one TS input, default 5000),
// FUZZ_CXX (clang++ to build with), FUZZ_JOBS (build parallelism, default 2).
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { committedInputs, JS_FUZZ_DIR, saveRegression, sha1 } from '../../test/fuzz/corpusFiles'
import { fuzzJsTarget } from '../../test/fuzz/runJsTarget'
import { JS_TARGETS } from '../../test/fuzz/targets/index'
import { repoRoot, sharedDir } from '../../test/helpers/sharedPath'
import { buildNativeFuzzers, fuzzNativeTarget, NATIVE_TARGETS, prepareNativeInputs } from './nativeFuzz'

interface Row {
  target: string
  engine: 'libFuzzer' | 'js-mutator'
  seconds: number
  execs: number
  coverage: number
  corpus: number
  newCrashes: number
  findings: Array<{ kind: string; signature: string; file: string; isNew: boolean }>
}

const seconds = Number(process.env.FUZZ_SECONDS ?? 60)
const only = process.env.FUZZ_TARGETS ? new Set(process.env.FUZZ_TARGETS.split(',').map((s) => s.trim())) : null
const seed = Number(process.env.FUZZ_SEED ?? 1)
const wanted = (name: string) => only === null || only.has(name)
const shared = sharedDir()
const rows: Row[] = []
const notes: string[] = []

if (!(seconds > 0)) throw new Error(`FUZZ_SECONDS must be positive, got ${process.env.FUZZ_SECONDS}`)
const known = [...NATIVE_TARGETS, ...JS_TARGETS.map((t) => t.name)]
const unknown = [...(only ?? [])].filter((name) => !known.includes(name))
if (unknown.length > 0)
  throw new Error(`FUZZ_TARGETS names no target: ${unknown.join(', ')} (targets: ${known.join(', ')})`)

// ---- native (libFuzzer) ----
const nativeTargets = NATIVE_TARGETS.filter(wanted)
if (process.env.FUZZ_NATIVE !== '0' && nativeTargets.length > 0) {
  try {
    buildNativeFuzzers(Number(process.env.FUZZ_JOBS ?? 2))
  } catch (e) {
    console.error(`\n${(e as Error).message}`)
    process.exit(2)
  }
  prepareNativeInputs(shared)
  for (const t of nativeTargets) {
    console.log(`\n== fuzz ${t} (libFuzzer, ${seconds} s)`)
    const r = await fuzzNativeTarget(t, seconds)
    rows.push({
      target: t,
      engine: 'libFuzzer',
      seconds: r.seconds,
      execs: r.execs,
      coverage: r.coverage,
      corpus: r.corpus,
      newCrashes: r.findings.filter((f) => f.isNew).length,
      findings: r.findings,
    })
  }
} else if (nativeTargets.length > 0) notes.push('native targets not run (FUZZ_NATIVE=0)')

// ---- TypeScript (coverage-guided mutation in a worker) ----
const jsCorpusRoot = path.join(repoRoot, 'build', 'fuzz', 'js-corpus')
if (process.env.FUZZ_JS !== '0') {
  for (const target of JS_TARGETS.filter((t) => wanted(t.name))) {
    console.log(`\n== fuzz ${target.name} (js-mutator, ${seconds} s)`)
    const workDir = path.join(jsCorpusRoot, target.name)
    mkdirSync(workDir, { recursive: true })
    const earlier = readdirSync(workDir).map((f) => new Uint8Array(readFileSync(path.join(workDir, f))))
    const inputs = [
      ...committedInputs(JS_FUZZ_DIR, 'regressions', target.name).map((c) => c.bytes),
      ...committedInputs(JS_FUZZ_DIR, 'seeds', target.name).map((c) => c.bytes),
      ...target.seeds(shared),
      ...earlier,
    ]
    const r = await fuzzJsTarget({
      target: target.name,
      seconds,
      seed,
      inputs,
      execTimeoutMs: Number(process.env.FUZZ_EXEC_TIMEOUT_MS ?? 5000),
      maxLength: 64 * 1024,
      heapMb: 1024,
    })
    for (const input of r.newInputs) writeFileSync(path.join(workDir, sha1(input)), input)
    const findings = r.findings.map((f) => {
      const saved = saveRegression(JS_FUZZ_DIR, target.name, f.kind, f.input)
      console.log(
        `  ${saved.isNew ? 'NEW' : 'known'} ${f.kind}: ${f.message.split('\n')[0]}\n    -> ${path.relative(repoRoot, saved.file)}`,
      )
      return { kind: f.kind, signature: f.signature, ...saved }
    })
    console.log(`  ${r.execs} execs, ${r.features} coverage features, corpus ${r.corpus}`)
    rows.push({
      target: target.name,
      engine: 'js-mutator',
      seconds: r.seconds,
      execs: r.execs,
      coverage: r.features,
      corpus: r.corpus,
      newCrashes: findings.filter((f) => f.isNew).length,
      findings,
    })
  }
}

// ---- report ----
const header = ['target', 'engine', 'seconds', 'execs', 'exec/s', 'coverage', 'corpus', 'new crashes', 'findings']
const table = rows.map((r) => [
  r.target,
  r.engine,
  r.seconds.toFixed(0),
  String(r.execs),
  (r.execs / Math.max(r.seconds, 1e-9)).toFixed(0),
  String(r.coverage),
  String(r.corpus),
  String(r.newCrashes),
  String(r.findings.length),
])
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i]!.length)))
const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ')
console.log(`\n${line(header)}\n${widths.map((w) => '-'.repeat(w)).join('  ')}\n${table.map(line).join('\n')}`)
console.log('coverage: libFuzzer edges (cov) for native targets, V8 block-coverage features for TypeScript targets')
for (const n of notes) console.log(n)
for (const r of rows)
  for (const f of r.findings)
    console.log(
      `${r.target}: ${f.isNew ? 'NEW' : 'still failing'} ${f.kind} ${f.signature} (${path.relative(repoRoot, f.file)})`,
    )

const out = path.join(repoRoot, 'build', 'fuzz', 'fuzz-results.json')
mkdirSync(path.dirname(out), { recursive: true })
writeFileSync(
  out,
  JSON.stringify(
    {
      date: new Date().toISOString(),
      machine: `${os.cpus()[0]?.model ?? '?'} x${os.cpus().length}`,
      secondsPerTarget: seconds,
      seed,
      shared: existsSync(shared) ? shared : null,
      notes,
      rows,
    },
    null,
    2,
  ) + '\n',
)
console.log(`\nwrote ${path.relative(repoRoot, out)}`)
process.exitCode = rows.some((r) => r.findings.length > 0) ? 1 : 0

// The native half of `npm run fuzz` (docs/fuzzing.md): builds the libFuzzer targets of native/fuzz with clang
// (ASan + UBSan over the whole engine), writes their generated seeds, runs each target for its time budget, and
// turns every crash, hang or out-of-memory into a minimized input in native/fuzz/regressions/<target>/.
import { spawn, spawnSync } from 'node:child_process'
import { createWriteStream, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { NATIVE_FUZZ_DIR, saveRegression } from '../../test/fuzz/corpusFiles'
import { repoRoot } from '../../test/helpers/sharedPath'

export const NATIVE_TARGETS = ['json', 'safetensors', 'model_config', 'weights', 'quant_state'] as const

/** Dictionary parts per target (native/fuzz/dict/*.dict), concatenated at run time. */
const DICTS: Record<(typeof NATIVE_TARGETS)[number], string[]> = {
  json: ['json'],
  safetensors: ['json', 'safetensors'],
  model_config: ['json', 'model_config'],
  weights: ['json', 'safetensors', 'weights', 'quant_state'],
  quant_state: ['json', 'quant_state'],
}

export interface NativeFinding {
  kind: string
  signature: string
  file: string
  isNew: boolean
}

export interface NativeFuzzResult {
  target: string
  seconds: number
  execs: number
  /** libFuzzer's cov (edges) and ft (features) at the end of the run. */
  coverage: number
  features: number
  corpus: number
  findings: NativeFinding[]
}

const BUILD = path.join(repoRoot, 'build', 'fuzz')

function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0
}

/** How to get what the native half needs; printed whenever clang or its fuzzer runtime is missing. */
export const CLANG_HELP =
  'install clang with libFuzzer and the sanitizer runtimes (Debian 12: sudo apt-get install clang-14 libclang-rt-14-dev; ' +
  'newer Debian/Ubuntu: sudo apt-get install clang libclang-rt-dev), or set FUZZ_CXX to such a clang++, ' +
  'or run only the TypeScript targets with FUZZ_NATIVE=0'

/** The clang++ to build with, after checking that it links a libFuzzer program with ASan and UBSan; throws with
 * CLANG_HELP when there is none (a fuzz run that silently skipped half its targets would report nothing found). */
export function findFuzzingClang(): string {
  const cxx = process.env.FUZZ_CXX ?? ['clang++-14', 'clang++'].find(onPath)
  if (!cxx) throw new Error(`npm run fuzz: no clang++ on PATH; libFuzzer needs clang. To fix: ${CLANG_HELP}`)
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dpo-fuzz-probe-'))
  try {
    writeFileSync(
      path.join(dir, 'probe.cpp'),
      '#include <cstddef>\n#include <cstdint>\n' +
        'extern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n',
    )
    const r = spawnSync(
      cxx,
      ['-fsanitize=fuzzer,address,undefined', path.join(dir, 'probe.cpp'), '-o', path.join(dir, 'probe')],
      { encoding: 'utf8' },
    )
    if (r.error || r.status !== 0) {
      const why = r.error?.message ?? r.stderr.split('\n').find((l) => /error/i.test(l)) ?? `exit status ${r.status}`
      throw new Error(`npm run fuzz: ${cxx} cannot link a libFuzzer program (${why.trim()}). To fix: ${CLANG_HELP}`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
  return cxx
}

/** Configures and builds the fuzzers with a clang that findFuzzingClang accepted; throws when the build fails. */
export function buildNativeFuzzers(jobs: number): void {
  const cxx = findFuzzingClang()
  const generator = onPath('ninja') ? ['-G', 'Ninja'] : []
  const configure = spawnSync(
    'cmake',
    [
      '-S',
      path.join(repoRoot, 'native'),
      '-B',
      BUILD,
      ...generator,
      `-DCMAKE_CXX_COMPILER=${cxx}`,
      '-DDPO_BUILD_FUZZERS=ON',
      '-DDPO_BUILD_ADDON=OFF',
      '-DDPO_BUILD_TOOLS=OFF',
      '-DDPO_BUILD_TESTS=OFF',
      '-DDPO_CUDA=OFF',
      '-DCMAKE_BUILD_TYPE=Release',
    ],
    { stdio: 'inherit' },
  )
  if (configure.status !== 0)
    throw new Error(`npm run fuzz: cmake could not configure the fuzz build in ${path.relative(repoRoot, BUILD)}`)
  const build = spawnSync('cmake', ['--build', BUILD, '-j', String(jobs)], { stdio: 'inherit' })
  if (build.status !== 0) throw new Error('npm run fuzz: the fuzz build failed (see the compiler output above)')
}

/** Generated seeds (tiny checkpoints; real files from shared when present) and the per-target dictionaries. */
export function prepareNativeInputs(shared: string): void {
  rmSync(path.join(BUILD, 'seeds'), { recursive: true, force: true })
  const args = [path.join(BUILD, 'seeds'), ...(existsSync(path.join(shared, 'models', 'stories260K')) ? [shared] : [])]
  const r = spawnSync(path.join(BUILD, 'fuzz', 'dpo-fuzz-seeds'), args, { stdio: 'inherit' })
  if (r.status !== 0) throw new Error('dpo-fuzz-seeds failed')
  mkdirSync(path.join(BUILD, 'dict'), { recursive: true })
  for (const t of NATIVE_TARGETS) {
    const text = DICTS[t].map((d) => readFileSync(path.join(NATIVE_FUZZ_DIR, 'dict', `${d}.dict`), 'utf8')).join('\n')
    writeFileSync(path.join(BUILD, 'dict', `${t}.dict`), text)
  }
}

/** Runs a fuzz executable, its output teed into `log`; resolves with the exit status and the output. */
function runLogged(
  exe: string,
  args: string[],
  log: string,
  killAfterS: number,
): Promise<{ status: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(exe, args, { env: { ...process.env, DPO_THREADS: '1', UBSAN_OPTIONS: 'print_stacktrace=1' } })
    const out = createWriteStream(log)
    let output = ''
    const take = (b: Buffer) => {
      out.write(b)
      output += b.toString('utf8')
      if (output.length > 4_000_000) output = output.slice(-2_000_000)
    }
    child.stdout.on('data', take)
    child.stderr.on('data', take)
    const timer = setTimeout(() => child.kill('SIGKILL'), killAfterS * 1000)
    child.on('close', (status) => {
      clearTimeout(timer)
      out.end()
      resolve({ status, output })
    })
  })
}

function lastMatch(text: string, re: RegExp): RegExpExecArray | null {
  let m: RegExpExecArray | null = null
  for (const x of text.matchAll(new RegExp(re.source, 'g'))) m = x as RegExpExecArray
  return m
}

/** What went wrong, in words that do not change from one input to the next: a harness's stable description (the
 * part before its first ': ' after 'dpo-fuzz: property violated'), or the sanitizer's summary line. */
function crashSignature(output: string): string {
  const line =
    /dpo-fuzz: [^\n]*/.exec(output)?.[0].split(': ').slice(0, 3).join(': ') ??
    /SUMMARY: \w+Sanitizer: [^\n]*/.exec(output)?.[0] ??
    /ERROR: libFuzzer: [^\n]*/.exec(output)?.[0] ??
    'unknown crash'
  return line
    .replace(/0x[0-9a-f]+/gi, 'ADDR')
    .replace(/\d+/g, 'N')
    .slice(0, 200)
}

/** Fuzzes one target for `seconds`, restarting after each new crash until the time is spent. */
export async function fuzzNativeTarget(target: string, seconds: number): Promise<NativeFuzzResult> {
  const exe = path.join(BUILD, 'fuzz', `fuzz_${target}`)
  const work = path.join(BUILD, 'corpus', target)
  const artifacts = path.join(BUILD, 'artifacts', target) + '/'
  mkdirSync(work, { recursive: true })
  mkdirSync(artifacts, { recursive: true })
  mkdirSync(path.join(BUILD, 'logs'), { recursive: true })
  const corpora = [
    work,
    path.join(BUILD, 'seeds', target),
    path.join(NATIVE_FUZZ_DIR, 'seeds', target),
    path.join(NATIVE_FUZZ_DIR, 'regressions', target),
  ].filter((d) => existsSync(d))
  const result: NativeFuzzResult = { target, seconds: 0, execs: 0, coverage: 0, features: 0, corpus: 0, findings: [] }
  const t0 = Date.now()
  for (let run = 0; run < 6; run++) {
    const left = Math.round(seconds - (Date.now() - t0) / 1000)
    if (left < 2) break
    const log = path.join(BUILD, 'logs', `${target}-${run}.log`)
    const { status, output } = await runLogged(
      exe,
      [
        `-max_total_time=${left}`,
        '-timeout=10',
        '-rss_limit_mb=2048',
        '-print_final_stats=1',
        `-dict=${path.join(BUILD, 'dict', `${target}.dict`)}`,
        `-artifact_prefix=${artifacts}`,
        ...corpora,
      ],
      log,
      left + 120,
    )
    const stat = /stat::number_of_executed_units:\s*(\d+)/.exec(output) ?? lastMatch(output, /#(\d+)\s/)
    result.execs += Number(stat?.[1] ?? 0)
    const cov = lastMatch(output, /cov: (\d+) ft: (\d+) corp: (\d+)/)
    if (cov) [result.coverage, result.features, result.corpus] = [Number(cov[1]), Number(cov[2]), Number(cov[3])]
    const artifact = /Test unit written to (\S+)/.exec(output)?.[1]
    if (status === 0 || !artifact) break
    const signature = crashSignature(output)
    const repeated = result.findings.some((f) => f.signature === signature)
    const kind = path.basename(artifact).split('-')[0]!
    const small = artifact + '.min'
    await runLogged(
      exe,
      ['-minimize_crash=1', '-max_total_time=30', '-timeout=10', `-exact_artifact_path=${small}`, artifact],
      log + '.min',
      150,
    )
    const bytes = new Uint8Array(readFileSync(existsSync(small) ? small : artifact))
    const saved = saveRegression(NATIVE_FUZZ_DIR, target, kind, bytes)
    if (!repeated) result.findings.push({ kind, signature, ...saved })
    if (repeated) break
  }
  result.seconds = (Date.now() - t0) / 1000
  return result
}

// A real full disk for test/faults/fullDisk.test.ts: mounts a small tmpfs, fills it, and records what our checked
// appends, a real `dpo-studio train` on the demo model and a merged-model export do when writes stop fitting. Run as root, or under
// `unshare -rm` (a user + mount namespace) where root is not available; prints one JSON object on stdout.
import { execFileSync, spawn } from 'node:child_process'
import {
  closeSync,
  existsSync,
  fstatSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeSync,
} from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { exportMergedModel } from '../../src-main/services/export/mergedModel'
import { appendFileChecked } from '../../src-main/services/fsAtomic'
import { repoRoot, sharedPath } from './sharedPath'

const [mountDir, cacheDir] = process.argv.slice(2) as [string, string]
const PAGE = 4096

/** Writes until the disk refuses, then frees `keepFree` bytes again. */
function fill(dir: string, keepFree: number): void {
  const file = path.join(dir, 'filler.bin')
  const fd = openSync(file, 'a')
  try {
    for (const chunk of [65536, PAGE, 1]) {
      const buf = Buffer.alloc(chunk, 0x55)
      for (;;) {
        try {
          if (writeSync(fd, buf) < chunk) break
        } catch {
          break
        }
      }
    }
    ftruncateSync(fd, Math.max(0, fstatSync(fd).size - keepFree))
  } finally {
    closeSync(fd)
  }
}

/** Lines of a JSONL file that do not parse (a torn last line would be one). */
function badLines(file: string): string[] {
  if (!existsSync(file)) return []
  const text = readFileSync(file, 'utf8')
  const lines = text.split('\n')
  const bad = lines.slice(0, -1).filter((l) => {
    try {
      JSON.parse(l)
      return false
    } catch {
      return true
    }
  })
  if (lines.at(-1) !== '') bad.push(`(no final newline) ${lines.at(-1)!.slice(0, 40)}`)
  return bad
}

async function main(): Promise<void> {
  mkdirSync(mountDir, { recursive: true })
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', mountDir])
  try {
    // 1. Our append helper on a disk with no page left: 1000-byte lines until one does not fit.
    const probe = path.join(mountDir, 'probe.jsonl')
    appendFileChecked(probe, JSON.stringify({ first: true }) + '\n') // the file's first page, then nothing more fits
    fill(mountDir, 0)
    let appended = 0
    let appendError: { code?: string; message: string } | null = null
    for (let i = 0; i < 100 && !appendError; i++) {
      try {
        appendFileChecked(probe, JSON.stringify({ i, pad: 'x'.repeat(980) }) + '\n')
        appended++
      } catch (e) {
        appendError = { code: (e as { code?: string }).code, message: (e as Error).message }
      }
    }
    const probeBad = badLines(probe)
    rmSync(path.join(mountDir, 'filler.bin'))
    rmSync(probe)

    // 2. A real training run whose disk fills up while it trains.
    const out = path.join(mountDir, 'run')
    const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm')).href
    const child = spawn(
      process.execPath,
      [
        '--import',
        tsx,
        path.join(repoRoot, 'src-main/cli/main.ts'),
        'train',
        '--model',
        path.join(repoRoot, 'resources/demo-model'),
        '--dataset',
        path.join(repoRoot, 'resources/sample-dataset/zh'),
        '--out',
        out,
        '--data-size',
        '60',
        '--epochs',
        '4',
        '--grad-accum',
        '2',
      ],
      {
        cwd: repoRoot,
        env: { ...process.env, DPO_STUDIO_CACHE: cacheDir, FORCE_COLOR: '0' },
        stdio: ['ignore', 'ignore', 'pipe'],
      },
    )
    let stderr = ''
    let filled = false
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d
      // Every file of the run exists by the reference pass; from then on only one page each for the two logs fits.
      if (!filled && /reference log-probs/.test(stderr)) {
        filled = true
        fill(mountDir, 2 * PAGE)
      }
    })
    const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)))
    const readJson = (f: string) =>
      existsSync(path.join(out, f)) ? JSON.parse(readFileSync(path.join(out, f), 'utf8')) : null
    const runResult = {
      code,
      stderr: stderr.trim().split('\n').slice(-3),
      filled,
      metricsLines: existsSync(path.join(out, 'metrics.jsonl'))
        ? readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).length
        : -1,
      badLines: [...badLines(path.join(out, 'metrics.jsonl')), ...badLines(path.join(out, 'steps.jsonl'))],
      status: readJson('run_status.json'),
      lockLeft: existsSync(path.join(out, '.dpo-studio-run.lock')),
    }
    rmSync(out, { recursive: true, force: true })
    rmSync(path.join(mountDir, 'filler.bin'), { force: true })

    // 3. An export (stories260K as a merged model, 1 MB) replaced on a disk with room for less than a copy of it.
    const merged = path.join(mountDir, 'merged')
    const req = {
      modelDir: sharedPath('models/stories260K'),
      adapterDir: null,
      mergeBase: 'original' as const,
      outDir: merged,
    }
    await exportMergedModel(req)
    const before = readFileSync(path.join(merged, 'model.safetensors'))
    fill(mountDir, 64 * 1024)
    let exportError: { code?: string; message: string } | null = null
    try {
      await exportMergedModel({ ...req, overwrite: true })
    } catch (e) {
      exportError = { code: (e as { code?: string }).code, message: (e as Error).message }
    }
    const result = {
      append: { appended, error: appendError, badLines: probeBad },
      run: runResult,
      export: {
        error: exportError,
        kept: readFileSync(path.join(merged, 'model.safetensors')).equals(before),
        entries: readdirSync(mountDir).sort(),
      },
    }
    process.stdout.write(JSON.stringify(result) + '\n')
  } finally {
    execFileSync('umount', ['-l', mountDir])
  }
}

await main()

// Checked file writes: whole files go to a temp name beside the target and are renamed (a crash or Ctrl-C never
// leaves a half-written file in place of a good one); appends check every byte and never leave a torn line; every
// failure names the file, and a full disk says so (E_DISK_FULL). docs/run-directory.md.
import {
  closeSync,
  fstatSync,
  fsyncSync,
  ftruncateSync,
  mkdirSync,
  openSync,
  renameSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs'
import { dirname, basename, join } from 'node:path'
import { StudioError, errorMessage } from './errors'

const FULL_DISK = new Set(['ENOSPC', 'EDQUOT'])

/** A write failure as a StudioError that names the file: E_DISK_FULL for a full disk or quota, else E_IO. */
export function fileWriteError(e: unknown, file: string, verb = 'write'): StudioError {
  if (e instanceof StudioError) return e
  const code = (e as NodeJS.ErrnoException)?.code
  const full = code !== undefined && FULL_DISK.has(code)
  const why = full ? `no space left on the device (${code}); free some space and try again` : errorMessage(e)
  return new StudioError(full ? 'E_DISK_FULL' : 'E_IO', `cannot ${verb} ${file}: ${why}`, {
    cause: e,
    details: { file, errno: code },
  })
}

export interface AtomicWriteOptions {
  /**
   * When the temp copy does not fit on a full disk, overwrite the existing file in place instead (status files:
   * recording "failed: disk full" matters more than atomicity, and the old version's blocks are reused).
   */
  inPlaceWhenFull?: boolean
}

export function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): void {
  try {
    mkdirSync(dirname(path), { recursive: true })
  } catch (e) {
    throw fileWriteError(e, dirname(path), 'create the folder')
  }
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${Date.now()}`)
  try {
    writeFileSync(tmp, data)
    renameSync(tmp, path)
  } catch (e) {
    rmSync(tmp, { force: true })
    const code = (e as NodeJS.ErrnoException)?.code
    if (options.inPlaceWhenFull && code !== undefined && FULL_DISK.has(code)) {
      try {
        overwriteInPlace(path, data)
        return
      } catch {
        /* report the first failure */
      }
    }
    throw fileWriteError(e, path)
  }
}

export function writeJsonAtomic(path: string, value: unknown, options: AtomicWriteOptions = {}): void {
  writeFileAtomic(path, JSON.stringify(value, null, 2) + '\n', options)
}

/**
 * Appends `text` and flushes it to disk. A short write is continued until every byte is written; when the disk
 * refuses the rest, the file is cut back to where it was, so it never ends in a torn line.
 */
export function appendFileChecked(path: string, text: string): void {
  const bytes = Buffer.from(text, 'utf8')
  let fd: number
  try {
    fd = openSync(path, 'a')
  } catch (e) {
    throw fileWriteError(e, path, 'open')
  }
  let start = -1
  try {
    start = fstatSync(fd).size
    writeAll(fd, bytes)
    fsyncSync(fd)
  } catch (e) {
    if (start >= 0) {
      try {
        ftruncateSync(fd, start)
      } catch {
        /* the error below still names the file */
      }
    }
    throw fileWriteError(e, path, 'append to')
  } finally {
    closeSync(fd)
  }
}

/** write(2) may write fewer bytes than asked (a filling disk): keep going; the next call reports why it stopped. */
export function writeAll(fd: number, bytes: Uint8Array): void {
  let done = 0
  while (done < bytes.length) {
    const n = writeSync(fd, bytes, done, bytes.length - done)
    if (n <= 0) throw Object.assign(new Error('the write made no progress'), { code: 'EIO' })
    done += n
  }
}

function overwriteInPlace(path: string, data: string | Uint8Array): void {
  const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data
  const fd = openSync(path, 'r+')
  try {
    ftruncateSync(fd, 0)
    writeAll(fd, bytes)
    fsyncSync(fd)
  } finally {
    closeSync(fd)
  }
}

// Lock files (docs/run-directory.md "Locks"): created with O_EXCL and holding {pid, hostname, started, command}, so
// a second process sees who holds them; a lock whose process is gone (same host, pid not running) is stale and
// taken over. Used for run directories and for the reference log-prob cache. Released on exit too.
import { closeSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs'
import { hostname } from 'node:os'
import { fileWriteError } from './fsAtomic'

export interface LockHolder {
  pid: number
  hostname: string
  started: string
  command: string
}

export interface FileLock {
  readonly file: string
  release(): void
}

/** Locks this process holds, released on exit too (process.exit skips finally blocks). */
const held = new Set<string>()
let exitHook = false

/** Takes the lock, or says who holds it ('unreadable': a lock being written right now). */
export function tryLock(file: string, command: string): FileLock | { holder: LockHolder | 'unreadable' } {
  const me: LockHolder = { pid: process.pid, hostname: hostname(), started: new Date().toISOString(), command }
  for (let attempt = 0; ; attempt++) {
    let fd: number
    try {
      fd = openSync(file, 'wx')
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw fileWriteError(e, file, 'create the lock')
      const holder = readLock(file)
      if (holder === null && attempt < 5) continue // released between our create and our read
      if (attempt < 2 && holder !== null && holder !== 'unreadable' && !holderIsLive(holder, file)) {
        rmSync(file, { force: true })
        continue
      }
      return { holder: holder ?? 'unreadable' }
    }
    try {
      writeSync(fd, JSON.stringify(me) + '\n')
    } catch (e) {
      closeSync(fd)
      rmSync(file, { force: true })
      throw fileWriteError(e, file)
    }
    closeSync(fd)
    held.add(file)
    if (!exitHook) {
      exitHook = true
      process.on('exit', () => held.forEach((f) => releaseFile(f)))
    }
    return {
      file,
      release: () => {
        if (held.delete(file)) releaseFile(file)
      },
    }
  }
}

/** tryLock, retried every 20 ms for up to waitMs (for locks held only for a moment); null when still held. */
export function lockWaiting(file: string, command: string, waitMs: number): FileLock | null {
  const until = Date.now() + waitMs
  const pause = new Int32Array(new SharedArrayBuffer(4))
  for (;;) {
    const got = tryLock(file, command)
    if (!('holder' in got)) return got
    if (Date.now() >= until) return null
    Atomics.wait(pause, 0, 0, 20)
  }
}

function releaseFile(file: string): void {
  const holder = readLock(file)
  if (holder !== 'unreadable' && holder?.pid === process.pid && holder.hostname === hostname())
    rmSync(file, { force: true })
}

/** The lock's holder, null when there is no lock, 'unreadable' when it is being written or damaged. */
export function readLock(file: string): LockHolder | null | 'unreadable' {
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ENOENT' ? null : 'unreadable'
  }
  try {
    const v = JSON.parse(text) as LockHolder
    return Number.isInteger(v.pid) && typeof v.hostname === 'string' ? v : 'unreadable'
  } catch {
    // A lock seconds old may be mid-write; an old unreadable one is debris.
    return ageMs(file) > 10_000 ? { pid: -1, hostname: hostname(), started: '', command: 'unknown' } : 'unreadable'
  }
}

/** True when the lock exists and its holder runs (or is on another host, where we cannot tell). */
export function lockIsHeld(file: string): boolean {
  const holder = readLock(file)
  if (holder === null) return false
  if (holder === 'unreadable') return true
  return holderIsLive(holder, file)
}

function holderIsLive(holder: LockHolder, file: string): boolean {
  if (holder.hostname !== hostname()) return true // cannot tell from here: the caller's message says how to clear it
  if (holder.pid === process.pid) return held.has(file)
  return pidAlive(holder.pid)
}

export function pidAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'
  }
}

function ageMs(file: string): number {
  try {
    return Date.now() - statSync(file).mtimeMs
  } catch {
    return Infinity
  }
}

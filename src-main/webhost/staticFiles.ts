// Serves the built renderer (out/renderer) and nothing else: the URL path is decoded once, must stay inside the
// root after normalisation and after symlinks are resolved, and may not hold NUL bytes, backslashes or dot files.
import { existsSync, realpathSync, statSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { extname, join, normalize, sep } from 'node:path'
import { isInside } from '../api/pathPolicy'

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.ico': 'image/x-icon',
  '.woff2': 'font/woff2',
  '.woff': 'font/woff',
  '.txt': 'text/plain; charset=utf-8',
}

/** Maps a request path to a file inside root, or null (the caller answers 404). */
export function resolveStatic(root: string, urlPath: string): string | null {
  let decoded: string
  try {
    decoded = decodeURIComponent(urlPath)
  } catch {
    return null
  }
  if (decoded.includes('\0') || decoded.includes('\\')) return null
  const rel = decoded === '/' || decoded === '' ? 'index.html' : decoded.replace(/^\/+/, '')
  if (rel.split('/').some((seg) => seg === '..' || seg.startsWith('.'))) return null
  const candidate = normalize(join(root, rel))
  const realRoot = realpathSync(root)
  if (!isInside(candidate, root) || !existsSync(candidate)) return null
  const real = realpathSync(candidate)
  if (!isInside(real, realRoot) || !statSync(real).isFile()) return null
  return real
}

export async function readStatic(file: string): Promise<{ body: Buffer; type: string }> {
  return { body: await readFile(file), type: TYPES[extname(file).toLowerCase()] ?? 'application/octet-stream' }
}

export const pathSep = sep

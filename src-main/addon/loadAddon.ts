// Loads the compiled addon (build/native/Release/dpo_engine.node) once, with an actionable error if it is missing.
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import type { NativeEngine } from './addonTypes'

let cached: NativeEngine | undefined

/** The repository (or app) root: the nearest folder above this file holding package.json. */
export function appRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url))
  for (let i = 0; i < 6; i++) {
    if (existsSync(resolve(dir, 'package.json'))) return dir
    dir = dirname(dir)
  }
  return process.cwd()
}

export function nativeAddonPath(): string {
  return process.env.DPO_ENGINE_PATH ?? resolve(appRoot(), 'build/native/Release/dpo_engine.node')
}

export function loadAddon(): NativeEngine {
  if (cached) return cached
  const path = nativeAddonPath()
  if (!existsSync(path)) {
    const err = new Error(`the engine is not built (${path} is missing): run \`npm run build:native\``) as Error & {
      code: string
    }
    err.code = 'E_NO_ENGINE'
    throw err
  }
  const require = createRequire(import.meta.url)
  cached = require(path) as NativeEngine
  return cached
}

// electron-vite: explicit entries for our folder names (src-main for main, engine host and preload, src-renderer
// for the UI). The preload is CommonJS because sandboxed preloads cannot be ES modules. Only the renderer uses the
// @shared alias; main reaches src-shared by relative path (docs/architecture.md#typescript-projects).
import { resolve } from 'node:path'
import { defineConfig, externalizeDepsPlugin } from 'electron-vite'
import vue from '@vitejs/plugin-vue'
import { sharedAlias } from './viteAlias'

/**
 * echarts/… and zrender/… each get a chunk; tslib (which both import) goes with zrender, the lower layer, so the two
 * chunks do not import each other. Everything else stays where Rollup puts it.
 */
function chartChunk(id: string): string | undefined {
  const pkg = /node_modules\/(echarts|zrender|tslib)\//.exec(id)?.[1]
  return pkg === 'tslib' ? 'zrender' : pkg
}

export default defineConfig({
  main: {
    plugins: [externalizeDepsPlugin()],
    build: {
      rollupOptions: {
        input: {
          index: resolve(__dirname, 'src-main/electron/main.ts'),
          host: resolve(__dirname, 'src-main/host/hostMain.ts'),
        },
      },
    },
  },
  preload: {
    plugins: [externalizeDepsPlugin()],
    build: {
      rollupOptions: {
        input: { index: resolve(__dirname, 'src-main/electron/preload.ts') },
        output: { format: 'cjs', entryFileNames: '[name].cjs' },
      },
    },
  },
  renderer: {
    root: resolve(__dirname, 'src-renderer'),
    plugins: [vue()],
    resolve: { alias: sharedAlias },
    build: {
      // electron-vite leaves the renderer unminified; the web host serves this same bundle to browsers, so minify.
      minify: true,
      rollupOptions: {
        input: { index: resolve(__dirname, 'src-renderer/index.html') },
        // ECharts and its zrender canvas layer are most of the bundle (docs/architecture.md#renderer-bundle); as
        // their own chunks each stays under Vite's 500 kB warning and is cached apart from the app's code.
        output: { manualChunks: chartChunk },
      },
    },
  },
})

// One ECharts instance per chart element: created on mount (kept in a shallowRef, never made deep-reactive),
// resized with its container, updated when the option changes, and disposed on unmount.
import { LineChart } from 'echarts/charts'
import { GridComponent, LegendComponent, MarkLineComponent, TooltipComponent } from 'echarts/components'
import { init, use, type EChartsCoreOption, type ECharts } from 'echarts/core'
import { CanvasRenderer } from 'echarts/renderers'
import { onBeforeUnmount, onMounted, shallowRef, watch, type Ref } from 'vue'

use([LineChart, GridComponent, LegendComponent, TooltipComponent, MarkLineComponent, CanvasRenderer])

export function useChart(el: Ref<HTMLElement | null>, option: () => EChartsCoreOption) {
  const chart = shallowRef<ECharts | null>(null)
  let observer: ResizeObserver | null = null

  onMounted(() => {
    if (!el.value) return
    chart.value = init(el.value, undefined, { renderer: 'canvas' })
    chart.value.setOption(option())
    observer = new ResizeObserver(() => chart.value?.resize())
    observer.observe(el.value)
  })
  // Axes and series are replaced, not merged: an axis range set for the first point (lib/axisFormat.ts) must not
  // outlive it, and a removed series must go.
  watch(option, (o) =>
    chart.value?.setOption(o, { notMerge: false, lazyUpdate: true, replaceMerge: ['xAxis', 'yAxis', 'series'] }),
  )
  onBeforeUnmount(() => {
    observer?.disconnect()
    chart.value?.dispose()
    chart.value = null
  })
  return chart
}

// The dpo-tool commands, one file each (cmd_*.cpp); dpo_tool.cpp dispatches to them.
#pragma once
#include "tool_common.h"

namespace dpo::tool {

int cmd_info(const Args& a);
int cmd_generate(const Args& a);
int cmd_make_model(const Args& a);
int cmd_bench(const Args& a);
int cmd_bench_hw6(const Args& a);
int cmd_self_check(const Args& a);
int cmd_nf4_quantize(const Args& a);
int cmd_kernel_bench(const Args& a);
int cmd_ceilings(const Args& a);

}  // namespace dpo::tool

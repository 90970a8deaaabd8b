// The addon's exportOps object (export_ops.cpp).
#pragma once
#include <napi.h>

namespace dpo_addon {
Napi::Object ExportOpsInit(Napi::Env env);
}

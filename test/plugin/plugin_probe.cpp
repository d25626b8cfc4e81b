// dlopen probe of the sparse_pose_ros TensorRT plugin library, run by test_plugin_library.py.
//
// Loads the library the way TensorRT's IPluginRegistry::loadLibrary does (dlopen + the
// getCreators / setLoggerFinder entry points), prints every creator's name, version, namespace
// and fields, then exercises the plugin's host-side methods (no GPU, no TensorRT library:
// only the headers). Output lines:
//   creator <name> <version> <namespace> <interface kind>
//   field <name> <type id> <length>
//   check <name> ok|FAIL <detail>
// The IExprBuilder used for getOutputShapes is a test double built on TensorRT's public
// apiv::VExprBuilder interface that evaluates constant expressions.
#include "NvInferRuntime.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstring>
#include <deque>
#include <initializer_list>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

int gFailures = 0;
std::vector<std::string> gLogged;

void check(char const* name, bool ok, std::string const& detail = "")
{
    std::printf("check %s %s %s\n", name, ok ? "ok" : "FAIL", detail.c_str());
    if (!ok)
    {
        ++gFailures;
    }
}

class CapturingLogger : public ILogger
{
public:
    void log(Severity severity, AsciiChar const* msg) noexcept override
    {
        if (severity <= Severity::kWARNING)
        {
            gLogged.emplace_back(msg);
        }
    }
};

class Finder : public ILoggerFinder
{
public:
    ILogger* findLogger() override
    {
        return &mLogger;
    }

private:
    CapturingLogger mLogger;
};

// --- constant-folding expression builder (test double of TensorRT's implementation) -------
class ConstExpr : public IDimensionExpr
{
public:
    explicit ConstExpr(int64_t value)
    {
        mValue.value = value;
        mImpl = &mValue;
    }

private:
    struct Value : apiv::VDimensionExpr
    {
        int64_t value{0};
        bool isConstant() const override
        {
            return true;
        }
        int64_t getConstantValue() const override
        {
            return value;
        }
        bool isSizeTensor() const override
        {
            return false;
        }
    } mValue;
};

class ConstExprBuilder : public IExprBuilder
{
public:
    ConstExprBuilder()
    {
        mImpl = &mBuilder;
    }

private:
    struct Builder : apiv::VExprBuilder
    {
        std::deque<ConstExpr> store;
        IDimensionExpr const* constant(int64_t value) override
        {
            store.emplace_back(value);
            return &store.back();
        }
        IDimensionExpr const* operation(
            DimensionOperation op, IDimensionExpr const& first, IDimensionExpr const& second) override
        {
            int64_t const a = first.getConstantValue();
            int64_t const b = second.getConstantValue();
            switch (op)
            {
            case DimensionOperation::kSUM: return constant(a + b);
            case DimensionOperation::kPROD: return constant(a * b);
            case DimensionOperation::kSUB: return constant(a - b);
            case DimensionOperation::kFLOOR_DIV: return constant(a / b);
            case DimensionOperation::kCEIL_DIV: return constant((a + b - 1) / b);
            default: return nullptr;
            }
        }
        IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
        {
            return nullptr;
        }
    } mBuilder;
};

Dims dims(std::initializer_list<int64_t> values)
{
    Dims d{};
    d.nbDims = static_cast<int32_t>(values.size());
    int32_t i = 0;
    for (int64_t v : values)
    {
        d.d[i++] = v;
    }
    return d;
}

struct BlockDims
{
    int64_t b, c, ce, co, h, w, stride;
    bool expand;
};

std::vector<DynamicPluginTensorDesc> descs(BlockDims const& s, DataType type)
{
    int64_t const ho = (s.h - 1) / s.stride + 1;
    int64_t const wo = (s.w - 1) / s.stride + 1;
    std::vector<Dims> shapes = {dims({s.b, s.c, s.h, s.w}), dims({s.b, 1, ho, wo}),
        s.expand ? dims({s.ce, s.c}) : dims({1}), s.expand ? dims({s.ce}) : dims({1}), dims({s.ce, 9}), dims({s.ce}),
        dims({s.co, s.ce}), dims({s.co}), dims({s.b, s.co, ho, wo})};
    std::vector<DynamicPluginTensorDesc> out(shapes.size());
    for (size_t i = 0; i < shapes.size(); ++i)
    {
        bool const activation = i == 0 || i == 1 || i == 8;
        out[i].desc.dims = shapes[i];
        out[i].desc.type = activation ? type : DataType::kFLOAT;
        out[i].desc.format = TensorFormat::kLINEAR;
        out[i].desc.scale = -1.0F;
        out[i].min = out[i].max = out[i].opt = shapes[i];
    }
    return out;
}

IPluginV3* create(IPluginCreatorV3One* creator, std::vector<PluginField> const& fields)
{
    PluginFieldCollection fc{static_cast<int32_t>(fields.size()), fields.data()};
    return creator->createPlugin("probe", &fc, TensorRTPhase::kBUILD);
}

//! The metadata string of a plugin (it spells every field), or "" if there is none.
std::string metadataOf(IPluginV3* plugin)
{
    auto* build = plugin == nullptr
        ? nullptr
        : static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    return build == nullptr ? std::string() : std::string(build->getMetadataString());
}

//! pad_before: optional (absent = 1, the meaning of every file from before the field), 0 only at
//! stride 2 and only on even inputs, serialised so an engine keeps it.
void exercisePadBefore(IPluginCreatorV3One* creator, std::vector<PluginField> const& withoutPad)
{
    int32_t const zero = 0, one = 1, two = 2, minusOne = -1;
    int64_t const zero64 = 0;
    IPluginV3* legacy = create(creator, withoutPad);
    check("pad_before_defaults_to_1", metadataOf(legacy).find("pad_before=1") != std::string::npos,
        metadataOf(legacy));
    delete legacy;

    std::vector<PluginField> tfSame = withoutPad; // stride 2
    tfSame.emplace_back("pad_before", &zero, PluginFieldType::kINT32, 1);
    IPluginV3* plugin = create(creator, tfSame);
    check("create_pad_before_0_stride2", plugin != nullptr);
    if (plugin == nullptr)
    {
        return;
    }
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime
        = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    auto even = descs(BlockDims{2, 8, 48, 16, 8, 6, 2, true}, DataType::kFLOAT);
    check("pad_before_0_configure_even", build->configurePlugin(even.data(), 8, even.data() + 8, 1) == 0);
    std::vector<PluginTensorDesc> plain(9);
    for (size_t i = 0; i < plain.size(); ++i)
    {
        plain[i] = even[i].desc;
    }
    check("pad_before_0_on_shape_change_even", runtime->onShapeChange(plain.data(), 8, plain.data() + 8, 1) == 0);
    // TF 'SAME' pads 1 before on an odd side: a 0 there is not what any exported graph meant.
    auto odd = descs(BlockDims{2, 8, 48, 16, 9, 7, 2, true}, DataType::kFLOAT);
    size_t const logged = gLogged.size();
    check("pad_before_0_rejects_odd_input", build->configurePlugin(odd.data(), 8, odd.data() + 8, 1) != 0);
    check("pad_before_0_odd_rejection_is_logged",
        gLogged.size() > logged && gLogged.back().find("even H and W") != std::string::npos,
        gLogged.empty() ? "" : gLogged.back());
    auto mixed = descs(BlockDims{2, 8, 48, 16, 8, 7, 2, true}, DataType::kFLOAT);
    check("pad_before_0_rejects_mixed_parity", build->configurePlugin(mixed.data(), 8, mixed.data() + 8, 1) != 0);

    PluginFieldCollection const* stored = runtime->getFieldsToSerialize();
    bool storedZero = false;
    for (int32_t i = 0; stored != nullptr && i < stored->nbFields; ++i)
    {
        PluginField const& field = stored->fields[i];
        storedZero = storedZero
            || (std::strcmp(field.name, "pad_before") == 0 && field.type == PluginFieldType::kINT32
                && *static_cast<int32_t const*>(field.data) == 0);
    }
    check("pad_before_0_serialized", storedZero);
    IPluginV3* again = stored == nullptr ? nullptr : creator->createPlugin("probe3", stored, TensorRTPhase::kRUNTIME);
    std::string const metadata = metadataOf(again);
    check("pad_before_0_round_trip", again != nullptr && metadata == metadataOf(plugin), metadata);
    std::printf("metadata %s\n", metadata.c_str());
    delete again;
    IPluginV3* copy = plugin->clone();
    check("pad_before_0_clone", metadataOf(copy) == metadataOf(plugin), metadataOf(copy));
    delete copy;
    delete plugin;

    std::vector<PluginField> f = tfSame;
    f[0] = PluginField("stride", &one, PluginFieldType::kINT32, 1);
    check("reject_pad_before_0_stride1", create(creator, f) == nullptr);
    f = tfSame;
    f.back() = PluginField("pad_before", &two, PluginFieldType::kINT32, 1);
    check("reject_pad_before_2", create(creator, f) == nullptr);
    f.back() = PluginField("pad_before", &minusOne, PluginFieldType::kINT32, 1);
    check("reject_pad_before_negative", create(creator, f) == nullptr);
    f.back() = PluginField("pad_before", &zero64, PluginFieldType::kINT64, 1); // parsers may pass INT64
    IPluginV3* from64 = create(creator, f);
    check("accept_int64_pad_before", metadataOf(from64).find("pad_before=0") != std::string::npos);
    delete from64;
    f.back() = PluginField("pad_before", &one, PluginFieldType::kINT32, 1);
    f[0] = PluginField("stride", &one, PluginFieldType::kINT32, 1);
    IPluginV3* explicitOne = create(creator, f);
    check("accept_pad_before_1_stride1", explicitOne != nullptr);
    delete explicitOne;
}

void exercise(IPluginCreatorV3One* creator)
{
    int32_t const two = 2, one = 1, zero = 0, three = 3;
    int64_t const two64 = 2;
    std::vector<PluginField> const valid = {{"stride", &two, PluginFieldType::kINT32, 1},
        {"has_expand", &one, PluginFieldType::kINT32, 1}, {"residual", &zero, PluginFieldType::kINT32, 1}};
    IPluginV3* plugin = create(creator, valid);
    check("create_valid", plugin != nullptr);
    if (plugin == nullptr)
    {
        return;
    }
    auto* core = static_cast<IPluginV3OneCore*>(plugin->getCapabilityInterface(PluginCapabilityType::kCORE));
    auto* build = static_cast<IPluginV3OneBuild*>(plugin->getCapabilityInterface(PluginCapabilityType::kBUILD));
    auto* runtime
        = static_cast<IPluginV3OneRuntime*>(plugin->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
    check("capabilities", core != nullptr && build != nullptr && runtime != nullptr);
    check("core_identity",
        std::strcmp(core->getPluginName(), creator->getPluginName()) == 0
            && std::strcmp(core->getPluginVersion(), creator->getPluginVersion()) == 0
            && std::strcmp(core->getPluginNamespace(), creator->getPluginNamespace()) == 0);
    check("nb_outputs", build->getNbOutputs() == 1);

    DataType in[8] = {DataType::kHALF, DataType::kHALF, DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT,
        DataType::kFLOAT, DataType::kFLOAT, DataType::kFLOAT};
    DataType outType = DataType::kFLOAT;
    check("output_type_follows_x", build->getOutputDataTypes(&outType, 1, in, 8) == 0 && outType == DataType::kHALF);
    in[0] = DataType::kINT32;
    check("output_type_rejects_int32", build->getOutputDataTypes(&outType, 1, in, 8) != 0);

    // Output shape: stride 2 on an odd 9x7 input -> 5x4; Co from w_proj.
    ConstExprBuilder eb;
    std::vector<DimsExprs> inExprs(8);
    BlockDims const s2{2, 8, 48, 16, 9, 7, 2, true};
    auto const d2 = descs(s2, DataType::kFLOAT);
    for (int32_t i = 0; i < 8; ++i)
    {
        inExprs[i].nbDims = d2[i].desc.dims.nbDims;
        for (int32_t k = 0; k < inExprs[i].nbDims; ++k)
        {
            inExprs[i].d[k] = eb.constant(d2[i].desc.dims.d[k]);
        }
    }
    DimsExprs outExpr{};
    int32_t const shapeStatus = build->getOutputShapes(inExprs.data(), 8, nullptr, 0, &outExpr, 1, eb);
    bool const shapeOk = shapeStatus == 0 && outExpr.nbDims == 4 && outExpr.d[0]->getConstantValue() == 2
        && outExpr.d[1]->getConstantValue() == 16 && outExpr.d[2]->getConstantValue() == 5
        && outExpr.d[3]->getConstantValue() == 4;
    check("output_shape_stride2_odd", shapeOk);

    // Formats: x fp32|fp16 linear; mask and y follow x; weights fp32 only.
    auto fmt = descs(s2, DataType::kHALF);
    bool formatsOk = build->supportsFormatCombination(0, fmt.data(), 8, 1)
        && build->supportsFormatCombination(1, fmt.data(), 8, 1)
        && build->supportsFormatCombination(4, fmt.data(), 8, 1)
        && build->supportsFormatCombination(8, fmt.data(), 8, 1);
    fmt[4].desc.type = DataType::kHALF;
    formatsOk = formatsOk && !build->supportsFormatCombination(4, fmt.data(), 8, 1);
    fmt[1].desc.type = DataType::kFLOAT;
    formatsOk = formatsOk && !build->supportsFormatCombination(1, fmt.data(), 8, 1);
    fmt[0].desc.type = DataType::kINT8;
    formatsOk = formatsOk && !build->supportsFormatCombination(0, fmt.data(), 8, 1);
    fmt[0].desc.type = DataType::kFLOAT;
    fmt[0].desc.format = TensorFormat::kHWC8;
    formatsOk = formatsOk && !build->supportsFormatCombination(0, fmt.data(), 8, 1);
    check("format_combinations", formatsOk);

    auto good = descs(s2, DataType::kFLOAT);
    check("configure_valid", build->configurePlugin(good.data(), 8, good.data() + 8, 1) == 0);
    size_t const ws = build->getWorkspaceSize(good.data(), 8, good.data() + 8, 1);
    auto bigger = descs(BlockDims{2, 8, 48, 16, 33, 31, 2, true}, DataType::kFLOAT);
    size_t const wsBig = build->getWorkspaceSize(bigger.data(), 8, bigger.data() + 8, 1);
    check("workspace_grows_with_input", ws > 0 && wsBig > ws, std::to_string(ws) + " " + std::to_string(wsBig));
    auto bad = good;
    bad[2].desc.dims = bad[2].min = bad[2].max = bad[2].opt = dims({48, 7}); // w_expand (Ce, C) with C != 8
    size_t const logged = gLogged.size();
    check("configure_rejects_bad_w_expand", build->configurePlugin(bad.data(), 8, bad.data() + 8, 1) != 0);
    check("rejection_is_logged", gLogged.size() > logged);
    bad = good;
    bad[1].desc.dims = bad[1].min = bad[1].max = bad[1].opt = dims({2, 1, 9, 7}); // mask at input size
    check("configure_rejects_bad_mask", build->configurePlugin(bad.data(), 8, bad.data() + 8, 1) != 0);

    std::vector<PluginTensorDesc> plain(9);
    for (size_t i = 0; i < plain.size(); ++i)
    {
        plain[i] = good[i].desc;
    }
    check("on_shape_change_valid", runtime->onShapeChange(plain.data(), 8, plain.data() + 8, 1) == 0);
    plain[8].dims = dims({2, 16, 9, 7});
    check("on_shape_change_rejects_bad_output", runtime->onShapeChange(plain.data(), 8, plain.data() + 8, 1) != 0);

    // Serialisation round trip: the fields TensorRT stores recreate an identical plugin.
    PluginFieldCollection const* stored = runtime->getFieldsToSerialize();
    bool roundTrip = stored != nullptr && stored->nbFields == 4;
    if (roundTrip)
    {
        IPluginV3* again = creator->createPlugin("probe2", stored, TensorRTPhase::kRUNTIME);
        roundTrip = again != nullptr;
        if (again != nullptr)
        {
            auto* againBuild
                = static_cast<IPluginV3OneBuild*>(again->getCapabilityInterface(PluginCapabilityType::kBUILD));
            roundTrip = std::strcmp(againBuild->getMetadataString(), build->getMetadataString()) == 0;
            std::printf("metadata %s\n", againBuild->getMetadataString());
            delete again;
        }
    }
    check("serialization_round_trip", roundTrip);

    IPluginV3* copy = plugin->clone();
    check("clone", copy != nullptr);
    delete copy;
    IPluginV3* attached = runtime->attachToContext(nullptr);
    check("attach_to_context", attached != nullptr);
    delete attached;
    delete plugin;

    // Field validation.
    std::vector<PluginField> f = valid;
    f[0] = PluginField("stride", &three, PluginFieldType::kINT32, 1);
    check("reject_stride_3", create(creator, f) == nullptr);
    f = valid;
    f[2] = PluginField("residual", &one, PluginFieldType::kINT32, 1); // residual with stride 2
    check("reject_residual_stride2", create(creator, f) == nullptr);
    f = valid;
    f.pop_back();
    check("reject_missing_field", create(creator, f) == nullptr);
    f = valid;
    f.emplace_back("dilation", &one, PluginFieldType::kINT32, 1);
    check("reject_unknown_field", create(creator, f) == nullptr);
    f = valid;
    f[0] = PluginField("stride", &two64, PluginFieldType::kINT64, 1); // parsers may pass INT64
    IPluginV3* from64 = create(creator, f);
    check("accept_int64_field", from64 != nullptr);
    delete from64;
    f = valid;
    f[0] = PluginField("stride", "2", PluginFieldType::kCHAR, 1);
    check("reject_char_field", create(creator, f) == nullptr);

    exercisePadBefore(creator, valid);
}

} // namespace

int main(int argc, char** argv)
{
    if (argc != 2)
    {
        std::fprintf(stderr, "usage: %s <plugin library>\n", argv[0]);
        return 2;
    }
    void* handle = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (handle == nullptr)
    {
        std::printf("check dlopen FAIL %s\n", dlerror());
        return 1;
    }
    using GetCreators = IPluginCreatorInterface* const* (*) (int32_t&);
    using SetLoggerFinder = void (*)(ILoggerFinder*);
    auto getCreators = reinterpret_cast<GetCreators>(dlsym(handle, "getCreators"));
    auto setLoggerFinder = reinterpret_cast<SetLoggerFinder>(dlsym(handle, "setLoggerFinder"));
    check("symbol_getCreators", getCreators != nullptr);
    check("symbol_setLoggerFinder", setLoggerFinder != nullptr);
    if (getCreators == nullptr || setLoggerFinder == nullptr)
    {
        return 1;
    }
    static Finder finder;
    setLoggerFinder(&finder);
    int32_t nbCreators = -1;
    IPluginCreatorInterface* const* creators = getCreators(nbCreators);
    check("creator_count", creators != nullptr && nbCreators >= 1, std::to_string(nbCreators));
    for (int32_t i = 0; creators != nullptr && i < nbCreators; ++i)
    {
        InterfaceInfo const info = creators[i]->getInterfaceInfo();
        if (std::strcmp(info.kind, "PLUGIN CREATOR_V3ONE") != 0)
        {
            std::printf("creator ? ? ? %s\n", info.kind);
            check("creator_is_v3one", false, info.kind);
            continue;
        }
        auto* creator = static_cast<IPluginCreatorV3One*>(creators[i]);
        std::printf("creator %s %s %s %s\n", creator->getPluginName(), creator->getPluginVersion(),
            creator->getPluginNamespace(), info.kind);
        PluginFieldCollection const* fields = creator->getFieldNames();
        for (int32_t k = 0; fields != nullptr && k < fields->nbFields; ++k)
        {
            std::printf("field %s %d %d\n", fields->fields[k].name, static_cast<int32_t>(fields->fields[k].type),
                fields->fields[k].length);
        }
        exercise(creator);
    }
    std::printf("failures %d\n", gFailures);
    return gFailures == 0 ? 0 : 1;
}

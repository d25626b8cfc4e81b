// SparseInvertedResidual IPluginV3 + creator. Every noexcept entry point validates its
// arguments inside try/catch and reports problems through the TensorRT logger; enqueue only
// forwards to sparseInvertedResidualLaunch.
#include "sparseInvertedResidualPlugin.h"

#include "common/pluginLogging.h"
#include "sparseInvertedResidualKernel.h"

#include <cstring>
#include <exception>
#include <limits>
#include <memory>
#include <stdexcept>

using nvinfer1::DataType;
using nvinfer1::Dims;
using nvinfer1::DimsExprs;
using nvinfer1::DynamicPluginTensorDesc;
using nvinfer1::PluginField;
using nvinfer1::PluginFieldCollection;
using nvinfer1::PluginFieldType;
using nvinfer1::PluginTensorDesc;

namespace sparse_pose_ros
{
namespace plugin
{
namespace
{

constexpr int32_t kSTATUS_SUCCESS = 0;
constexpr int32_t kSTATUS_FAILURE = -1;

void logException(char const* where, std::exception const& e) noexcept
{
    logPluginError(where, e.what());
}

void require(bool condition, char const* message)
{
    if (!condition)
    {
        throw std::invalid_argument(message);
    }
}

int64_t volume(Dims const& d)
{
    int64_t v = 1;
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        v *= d.d[i];
    }
    return v;
}

int32_t narrow(int64_t value, char const* what)
{
    if (value <= 0 || value > std::numeric_limits<int32_t>::max())
    {
        throw std::invalid_argument(std::string(what) + " must be a positive int32 extent");
    }
    return static_cast<int32_t>(value);
}

//! One integer from a plugin field of any integral type (the ONNX parser may hand over INT
//! attributes as int32 or int64 depending on its version).
int64_t readInt(PluginField const& field)
{
    if (field.data == nullptr || field.length != 1)
    {
        throw std::invalid_argument(std::string("field '") + field.name + "' must hold exactly one integer");
    }
    switch (field.type)
    {
    case PluginFieldType::kINT8: return *static_cast<int8_t const*>(field.data);
    case PluginFieldType::kINT16: return *static_cast<int16_t const*>(field.data);
    case PluginFieldType::kINT32: return *static_cast<int32_t const*>(field.data);
    case PluginFieldType::kINT64: return *static_cast<int64_t const*>(field.data);
    default: throw std::invalid_argument(std::string("field '") + field.name + "' must be an integer field");
    }
}

bool isFloatOrHalf(DataType type)
{
    return type == DataType::kFLOAT || type == DataType::kHALF;
}

} // namespace

char const* configError(SparseInvertedResidualConfig const& config) noexcept
{
    if (config.stride != 1 && config.stride != 2)
    {
        return "stride must be 1 or 2";
    }
    if (config.hasExpand != 0 && config.hasExpand != 1)
    {
        return "has_expand must be 0 or 1";
    }
    if (config.residual != 0 && config.residual != 1)
    {
        return "residual must be 0 or 1";
    }
    if (config.residual == 1 && config.stride != 1)
    {
        return "residual blocks must have stride 1";
    }
    if (config.padBefore != kPAD_BEFORE_SYMMETRIC && config.padBefore != kPAD_BEFORE_TF_SAME)
    {
        return "pad_before must be 0 or 1";
    }
    // At stride 1 TF 'SAME' is symmetric too, so a 0 there can only come from a broken export.
    if (config.padBefore == kPAD_BEFORE_TF_SAME && config.stride != 2)
    {
        return "pad_before 0 (TF 'SAME') is only valid at stride 2";
    }
    return nullptr;
}

// ------------------------------------------------------------------------------------------
// Plugin

SparseInvertedResidualPlugin::SparseInvertedResidualPlugin(
    SparseInvertedResidualConfig const& config, std::string pluginNamespace)
    : mConfig(config)
    , mNamespace(std::move(pluginNamespace))
{
    char const* error = configError(config);
    if (error != nullptr)
    {
        throw std::invalid_argument(error);
    }
    mMetadata = "stride=" + std::to_string(config.stride) + " has_expand=" + std::to_string(config.hasExpand)
        + " residual=" + std::to_string(config.residual) + " pad_before=" + std::to_string(config.padBefore);
}

nvinfer1::IPluginCapability* SparseInvertedResidualPlugin::getCapabilityInterface(
    nvinfer1::PluginCapabilityType type) noexcept
{
    try
    {
        switch (type)
        {
        case nvinfer1::PluginCapabilityType::kBUILD: return static_cast<nvinfer1::IPluginV3OneBuild*>(this);
        case nvinfer1::PluginCapabilityType::kRUNTIME: return static_cast<nvinfer1::IPluginV3OneRuntime*>(this);
        case nvinfer1::PluginCapabilityType::kCORE: return static_cast<nvinfer1::IPluginV3OneCore*>(this);
        }
        logPluginError("getCapabilityInterface", "unknown capability type");
    }
    catch (std::exception const& e)
    {
        logException("getCapabilityInterface", e);
    }
    return nullptr;
}

nvinfer1::IPluginV3* SparseInvertedResidualPlugin::clone() noexcept
{
    try
    {
        return std::make_unique<SparseInvertedResidualPlugin>(mConfig, mNamespace).release();
    }
    catch (std::exception const& e)
    {
        logException("clone", e);
    }
    return nullptr;
}

char const* SparseInvertedResidualPlugin::getPluginName() const noexcept
{
    return kSPARSE_IR_PLUGIN_NAME;
}

char const* SparseInvertedResidualPlugin::getPluginVersion() const noexcept
{
    return kSPARSE_IR_PLUGIN_VERSION;
}

char const* SparseInvertedResidualPlugin::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

int32_t SparseInvertedResidualPlugin::getNbOutputs() const noexcept
{
    return kNB_OUTPUTS;
}

int32_t SparseInvertedResidualPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    try
    {
        require(outputTypes != nullptr && inputTypes != nullptr, "null type arrays");
        require(nbInputs == kNB_INPUTS, "expected 8 inputs (x, mask, w/b expand, w/b dw, w/b proj)");
        require(nbOutputs == kNB_OUTPUTS, "expected 1 output");
        require(isFloatOrHalf(inputTypes[kX_IDX]), "x must be float32 or float16");
        outputTypes[kY_IDX] = inputTypes[kX_IDX];
        return kSTATUS_SUCCESS;
    }
    catch (std::exception const& e)
    {
        logException("getOutputDataTypes", e);
    }
    return kSTATUS_FAILURE;
}

int32_t SparseInvertedResidualPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs,
    DimsExprs const* /*shapeInputs*/, int32_t nbShapeInputs, DimsExprs* outputs, int32_t nbOutputs,
    nvinfer1::IExprBuilder& exprBuilder) noexcept
{
    try
    {
        require(inputs != nullptr && outputs != nullptr, "null shape arrays");
        require(nbInputs == kNB_INPUTS && nbOutputs == kNB_OUTPUTS, "expected 8 inputs and 1 output");
        require(nbShapeInputs == 0, "the plugin takes no shape inputs");
        DimsExprs const& x = inputs[kX_IDX];
        require(x.nbDims == 4, "x must be 4-D (B, C, H, W)");
        require(inputs[kW_PROJ_IDX].nbDims == 2, "w_proj must be 2-D (Co, Ce)");
        DimsExprs& y = outputs[kY_IDX];
        y.nbDims = 4;
        y.d[0] = x.d[0];
        y.d[1] = inputs[kW_PROJ_IDX].d[0];
        if (mConfig.stride == 1)
        {
            y.d[2] = x.d[2];
            y.d[3] = x.d[3];
        }
        else
        {
            // floor((H - 1) / 2) + 1 == ceil(H / 2) for H >= 1 (3x3 conv, stride 2, with padding 1 or
            // TF 'SAME' on an even H: pad_before does not change the extent).
            nvinfer1::IDimensionExpr const* two = exprBuilder.constant(2);
            require(two != nullptr, "expression builder failed");
            y.d[2] = exprBuilder.operation(nvinfer1::DimensionOperation::kCEIL_DIV, *x.d[2], *two);
            y.d[3] = exprBuilder.operation(nvinfer1::DimensionOperation::kCEIL_DIV, *x.d[3], *two);
        }
        for (int32_t i = 0; i < 4; ++i)
        {
            require(y.d[i] != nullptr, "output dimension expression is null");
        }
        return kSTATUS_SUCCESS;
    }
    catch (std::exception const& e)
    {
        logException("getOutputShapes", e);
    }
    return kSTATUS_FAILURE;
}

bool SparseInvertedResidualPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    try
    {
        require(inOut != nullptr, "null tensor descriptions");
        require(nbInputs == kNB_INPUTS && nbOutputs == kNB_OUTPUTS, "expected 8 inputs and 1 output");
        require(pos >= 0 && pos < nbInputs + nbOutputs, "tensor position out of range");
        PluginTensorDesc const& desc = inOut[pos].desc;
        if (desc.format != nvinfer1::TensorFormat::kLINEAR)
        {
            return false;
        }
        if (pos == kX_IDX)
        {
            return isFloatOrHalf(desc.type);
        }
        if (pos == kMASK_IDX || pos == kNB_INPUTS + kY_IDX)
        {
            return desc.type == inOut[kX_IDX].desc.type;
        }
        return desc.type == DataType::kFLOAT; // folded weights stay fp32 (fp32 accumulation)
    }
    catch (std::exception const& e)
    {
        logException("supportsFormatCombination", e);
    }
    return false;
}

SparseBlockShape SparseInvertedResidualPlugin::blockShape(Dims const* in, int32_t nbInputs) const
{
    require(in != nullptr && nbInputs == kNB_INPUTS, "expected 8 input shapes");
    Dims const& x = in[kX_IDX];
    Dims const& mask = in[kMASK_IDX];
    Dims const& wDw = in[kW_DW_IDX];
    Dims const& wProj = in[kW_PROJ_IDX];
    require(x.nbDims == 4, "x must be 4-D (B, C, H, W)");
    require(wDw.nbDims == 2 && wDw.d[1] == 9, "w_dw must be (Ce, 9)");
    require(wProj.nbDims == 2, "w_proj must be (Co, Ce)");
    require(wProj.d[1] == wDw.d[0], "w_proj must be (Co, Ce) with Ce = w_dw rows");
    require(volume(in[kB_DW_IDX]) == wDw.d[0], "b_dw must have Ce elements");
    require(volume(in[kB_PROJ_IDX]) == wProj.d[0], "b_proj must have Co elements");

    SparseBlockShape s;
    s.batch = narrow(x.d[0], "batch");
    s.inChannels = narrow(x.d[1], "channels of x");
    s.inHeight = narrow(x.d[2], "height of x");
    s.inWidth = narrow(x.d[3], "width of x");
    s.hiddenChannels = narrow(wDw.d[0], "Ce");
    s.outChannels = narrow(wProj.d[0], "Co");
    s.stride = mConfig.stride;
    s.padBefore = mConfig.padBefore;
    s.hasExpand = mConfig.hasExpand == 1;
    s.residual = mConfig.residual == 1;
    if (s.hasExpand)
    {
        Dims const& wExpand = in[kW_EXPAND_IDX];
        require(wExpand.nbDims == 2 && wExpand.d[0] == s.hiddenChannels && wExpand.d[1] == s.inChannels,
            "w_expand must be (Ce, C)");
        require(volume(in[kB_EXPAND_IDX]) == s.hiddenChannels, "b_expand must have Ce elements");
    }
    require(mask.nbDims == 4 && mask.d[0] == s.batch && mask.d[1] == 1
            && mask.d[2] == sparseBlockOutExtent(s.inHeight, s.stride)
            && mask.d[3] == sparseBlockOutExtent(s.inWidth, s.stride),
        "mask must be (B, 1, Ho, Wo) at the block's output resolution");
    // pad_before 0 stands for TF 'SAME' on an even side (0 before, 1 after). On an odd side TF
    // pads 1 before, so the exported graph (padding fixed at export size) never meant 0 there:
    // refuse it rather than silently reading two zero rows after the input.
    require(s.padBefore != kPAD_BEFORE_TF_SAME || (s.inHeight % 2 == 0 && s.inWidth % 2 == 0),
        "pad_before 0 (TF 'SAME') needs an even H and W");
    char const* error = sparseBlockShapeError(s);
    require(error == nullptr, error);
    return s;
}

int32_t SparseInvertedResidualPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        require(in != nullptr && out != nullptr, "null tensor descriptions");
        require(nbInputs == kNB_INPUTS && nbOutputs == kNB_OUTPUTS, "expected 8 inputs and 1 output");
        Dims minDims[kNB_INPUTS];
        Dims maxDims[kNB_INPUTS];
        for (int32_t i = 0; i < kNB_INPUTS; ++i)
        {
            minDims[i] = in[i].min;
            maxDims[i] = in[i].max;
        }
        blockShape(minDims, kNB_INPUTS); // both ends of the optimisation profile must be valid
        blockShape(maxDims, kNB_INPUTS);
        return kSTATUS_SUCCESS;
    }
    catch (std::exception const& e)
    {
        logException("configurePlugin", e);
    }
    return kSTATUS_FAILURE;
}

size_t SparseInvertedResidualPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    try
    {
        require(inputs != nullptr && nbInputs == kNB_INPUTS, "expected 8 inputs");
        Dims maxDims[kNB_INPUTS];
        for (int32_t i = 0; i < kNB_INPUTS; ++i)
        {
            maxDims[i] = inputs[i].max;
        }
        // Index lists + features for the largest shape of the profile (capacity = all positions).
        return sparseBlockWorkspaceSize(blockShape(maxDims, kNB_INPUTS));
    }
    catch (std::exception const& e)
    {
        logException("getWorkspaceSize", e);
    }
    return 0;
}

char const* SparseInvertedResidualPlugin::getMetadataString() noexcept
{
    return mMetadata.c_str();
}

int32_t SparseInvertedResidualPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        require(in != nullptr && out != nullptr, "null tensor descriptions");
        require(nbInputs == kNB_INPUTS && nbOutputs == kNB_OUTPUTS, "expected 8 inputs and 1 output");
        Dims dims[kNB_INPUTS];
        for (int32_t i = 0; i < kNB_INPUTS; ++i)
        {
            dims[i] = in[i].dims;
        }
        SparseBlockShape const s = blockShape(dims, kNB_INPUTS);
        Dims const& y = out[kY_IDX].dims;
        require(y.nbDims == 4 && y.d[0] == s.batch && y.d[1] == s.outChannels
                && y.d[2] == sparseBlockOutExtent(s.inHeight, s.stride)
                && y.d[3] == sparseBlockOutExtent(s.inWidth, s.stride),
            "output shape does not match (B, Co, Ho, Wo)");
        return kSTATUS_SUCCESS;
    }
    catch (std::exception const& e)
    {
        logException("onShapeChange", e);
    }
    return kSTATUS_FAILURE;
}

int32_t SparseInvertedResidualPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    try
    {
        require(inputDesc != nullptr && outputDesc != nullptr && inputs != nullptr && outputs != nullptr,
            "null enqueue arguments");
        Dims dims[kNB_INPUTS];
        for (int32_t i = 0; i < kNB_INPUTS; ++i)
        {
            dims[i] = inputDesc[i].dims;
        }
        cudaError_t const status = sparseInvertedResidualLaunch(
            blockShape(dims, kNB_INPUTS), inputDesc[kX_IDX].type, inputs, outputs[kY_IDX], workspace, stream);
        if (status == cudaSuccess)
        {
            return kSTATUS_SUCCESS;
        }
        logPluginError("enqueue", cudaGetErrorString(status));
    }
    catch (std::exception const& e)
    {
        logException("enqueue", e);
    }
    return kSTATUS_FAILURE;
}

nvinfer1::IPluginV3* SparseInvertedResidualPlugin::attachToContext(
    nvinfer1::IPluginResourceContext* /*context*/) noexcept
{
    return clone(); // stateless apart from its fields: nothing per-context to acquire
}

PluginFieldCollection const* SparseInvertedResidualPlugin::getFieldsToSerialize() noexcept
{
    try
    {
        mFieldsToSerialize.clear();
        mFieldsToSerialize.emplace_back(kFIELD_STRIDE, &mConfig.stride, PluginFieldType::kINT32, 1);
        mFieldsToSerialize.emplace_back(kFIELD_HAS_EXPAND, &mConfig.hasExpand, PluginFieldType::kINT32, 1);
        mFieldsToSerialize.emplace_back(kFIELD_RESIDUAL, &mConfig.residual, PluginFieldType::kINT32, 1);
        mFieldsToSerialize.emplace_back(kFIELD_PAD_BEFORE, &mConfig.padBefore, PluginFieldType::kINT32, 1);
        mFCToSerialize.nbFields = static_cast<int32_t>(mFieldsToSerialize.size());
        mFCToSerialize.fields = mFieldsToSerialize.data();
        return &mFCToSerialize;
    }
    catch (std::exception const& e)
    {
        logException("getFieldsToSerialize", e);
    }
    return nullptr;
}

// ------------------------------------------------------------------------------------------
// Creator

SparseInvertedResidualPluginCreator::SparseInvertedResidualPluginCreator()
{
    mFields.emplace_back(kFIELD_STRIDE, nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back(kFIELD_HAS_EXPAND, nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back(kFIELD_RESIDUAL, nullptr, PluginFieldType::kINT32, 1);
    mFields.emplace_back(kFIELD_PAD_BEFORE, nullptr, PluginFieldType::kINT32, 1); // optional, default 1
    mFC.nbFields = static_cast<int32_t>(mFields.size());
    mFC.fields = mFields.data();
}

char const* SparseInvertedResidualPluginCreator::getPluginName() const noexcept
{
    return kSPARSE_IR_PLUGIN_NAME;
}

char const* SparseInvertedResidualPluginCreator::getPluginVersion() const noexcept
{
    return kSPARSE_IR_PLUGIN_VERSION;
}

char const* SparseInvertedResidualPluginCreator::getPluginNamespace() const noexcept
{
    return mNamespace.c_str();
}

PluginFieldCollection const* SparseInvertedResidualPluginCreator::getFieldNames() noexcept
{
    return &mFC;
}

nvinfer1::IPluginV3* SparseInvertedResidualPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, nvinfer1::TensorRTPhase /*phase*/) noexcept
{
    try
    {
        require(fc != nullptr && (fc->nbFields == 0 || fc->fields != nullptr), "null field collection");
        SparseInvertedResidualConfig config;
        bool seenStride = false;
        bool seenExpand = false;
        bool seenResidual = false;
        for (int32_t i = 0; i < fc->nbFields; ++i)
        {
            PluginField const& field = fc->fields[i];
            require(field.name != nullptr, "unnamed plugin field");
            int64_t const value = readInt(field);
            require(value >= std::numeric_limits<int32_t>::min() && value <= std::numeric_limits<int32_t>::max(),
                "field value out of int32 range");
            if (std::strcmp(field.name, kFIELD_STRIDE) == 0)
            {
                config.stride = static_cast<int32_t>(value);
                seenStride = true;
            }
            else if (std::strcmp(field.name, kFIELD_HAS_EXPAND) == 0)
            {
                config.hasExpand = static_cast<int32_t>(value);
                seenExpand = true;
            }
            else if (std::strcmp(field.name, kFIELD_RESIDUAL) == 0)
            {
                config.residual = static_cast<int32_t>(value);
                seenResidual = true;
            }
            else if (std::strcmp(field.name, kFIELD_PAD_BEFORE) == 0)
            {
                // Optional: absent in ONNX files and engines from before the field, which were
                // all symmetric (config keeps kPAD_BEFORE_DEFAULT).
                config.padBefore = static_cast<int32_t>(value);
            }
            else
            {
                throw std::invalid_argument(std::string("unknown field '") + field.name
                    + "' (expected stride, has_expand, residual, pad_before)");
            }
        }
        require(seenStride && seenExpand && seenResidual, "fields stride, has_expand and residual are all required");
        return std::make_unique<SparseInvertedResidualPlugin>(config, mNamespace).release();
    }
    catch (std::exception const& e)
    {
        std::string const where = std::string("createPlugin(") + (name != nullptr ? name : "") + ")";
        logException(where.c_str(), e);
    }
    return nullptr;
}

} // namespace plugin
} // namespace sparse_pose_ros

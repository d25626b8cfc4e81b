// SparseInvertedResidual: one gated MobileNetV2 block (gather -> expand -> masked depthwise ->
// project -> scatter) as a TensorRT IPluginV3. See plugin/README.md for inputs, fields and the
// ONNX node the exporter emits.
#ifndef SPARSE_POSE_ROS_SPARSE_INVERTED_RESIDUAL_PLUGIN_H
#define SPARSE_POSE_ROS_SPARSE_INVERTED_RESIDUAL_PLUGIN_H

#include "NvInferRuntime.h"
#include "sparse_block.h"

#include <cstdint>
#include <string>
#include <vector>

namespace sparse_pose_ros
{
namespace plugin
{

constexpr char const* kSPARSE_IR_PLUGIN_NAME = "SparseInvertedResidual";
constexpr char const* kSPARSE_IR_PLUGIN_VERSION = "1";
constexpr char const* kSPARSE_IR_PLUGIN_NAMESPACE = "sparse_pose_ros";

constexpr char const* kFIELD_STRIDE = "stride";
constexpr char const* kFIELD_HAS_EXPAND = "has_expand";
constexpr char const* kFIELD_RESIDUAL = "residual";
constexpr char const* kFIELD_PAD_BEFORE = "pad_before";

//! Zero rows/cols the depthwise 3x3 pads before the input on both axes. 1 is PyTorch's
//! symmetric padding=1; 0 is TF 'SAME' of a stride-2 conv on an even input (0 before, 1 after:
//! output i reads inputs 2i..2i+2), the padding MoveNet's pretrained weights expect.
constexpr int32_t kPAD_BEFORE_SYMMETRIC = 1;
constexpr int32_t kPAD_BEFORE_TF_SAME = 0;
//! Value of an absent `pad_before` field: ONNX files and engines written before the field
//! existed were all symmetric, so they keep their meaning.
constexpr int32_t kPAD_BEFORE_DEFAULT = kPAD_BEFORE_SYMMETRIC;

//! The plugin's fields (serialised as four int32 values).
struct SparseInvertedResidualConfig
{
    int32_t stride{1};                      //!< 1 or 2
    int32_t hasExpand{1};                   //!< 0 or 1
    int32_t residual{0};                    //!< 0 or 1 (requires stride 1 and C == Co)
    int32_t padBefore{kPAD_BEFORE_DEFAULT}; //!< 1, or 0 at stride 2 only (TF 'SAME', even H and W)
};

//! nullptr if `config` is valid, else a static message.
char const* configError(SparseInvertedResidualConfig const& config) noexcept;

class SparseInvertedResidualPlugin : public nvinfer1::IPluginV3,
                                     public nvinfer1::IPluginV3OneCore,
                                     public nvinfer1::IPluginV3OneBuild,
                                     public nvinfer1::IPluginV3OneRuntime
{
public:
    SparseInvertedResidualPlugin(SparseInvertedResidualConfig const& config, std::string pluginNamespace);
    SparseInvertedResidualPlugin(SparseInvertedResidualPlugin const&) = delete;
    SparseInvertedResidualPlugin& operator=(SparseInvertedResidualPlugin const&) = delete;
    ~SparseInvertedResidualPlugin() override = default;

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;
    char const* getMetadataString() noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

    SparseInvertedResidualConfig const& config() const noexcept
    {
        return mConfig;
    }

private:
    //! Shape of the block for concrete input dims; throws std::invalid_argument with the reason.
    SparseBlockShape blockShape(nvinfer1::Dims const* inputDims, int32_t nbInputs) const;

    SparseInvertedResidualConfig mConfig;
    std::string mNamespace;
    std::string mMetadata;
    std::vector<nvinfer1::PluginField> mFieldsToSerialize;
    nvinfer1::PluginFieldCollection mFCToSerialize{};
};

class SparseInvertedResidualPluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    SparseInvertedResidualPluginCreator();
    ~SparseInvertedResidualPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFC{};
    std::string mNamespace{kSPARSE_IR_PLUGIN_NAMESPACE};
};

} // namespace plugin
} // namespace sparse_pose_ros

#endif // SPARSE_POSE_ROS_SPARSE_INVERTED_RESIDUAL_PLUGIN_H

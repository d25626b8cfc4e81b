// Launcher of the SparseInvertedResidual plugin (see sparseInvertedResidualKernel.h).
#include "sparseInvertedResidualKernel.h"

namespace sparse_pose_ros
{
namespace plugin
{

cudaError_t sparseInvertedResidualLaunch(SparseBlockShape const& shape, nvinfer1::DataType type,
    void const* const* inputs, void* output, void* workspace, cudaStream_t stream) noexcept
{
    if (inputs == nullptr || output == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    SparseDType dtype{};
    switch (type)
    {
    case nvinfer1::DataType::kFLOAT: dtype = SparseDType::kFLOAT32; break;
    case nvinfer1::DataType::kHALF: dtype = SparseDType::kFLOAT16; break;
    default: return cudaErrorInvalidValue;
    }
    SparseBlockTensors tensors;
    tensors.x = inputs[kX_IDX];
    tensors.mask = inputs[kMASK_IDX];
    tensors.wExpand = static_cast<float const*>(inputs[kW_EXPAND_IDX]);
    tensors.bExpand = static_cast<float const*>(inputs[kB_EXPAND_IDX]);
    tensors.wDepthwise = static_cast<float const*>(inputs[kW_DW_IDX]);
    tensors.bDepthwise = static_cast<float const*>(inputs[kB_DW_IDX]);
    tensors.wProject = static_cast<float const*>(inputs[kW_PROJ_IDX]);
    tensors.bProject = static_cast<float const*>(inputs[kB_PROJ_IDX]);
    tensors.y = output;
    // TensorRT sized the workspace for the largest profile shape; the layout of the current
    // (smaller or equal) shape always fits into it.
    return launchSparseInvertedResidual(shape, dtype, tensors, workspace, sparseBlockWorkspaceSize(shape), stream);
}

} // namespace plugin
} // namespace sparse_pose_ros

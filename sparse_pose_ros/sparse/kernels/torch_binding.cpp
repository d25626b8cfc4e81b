// PyTorch binding of the sparse inverted-residual kernels (built on demand by
// sparse_pose_ros/sparse/cuda_ext.py with torch.utils.cpp_extension.load).
//
// Only c10/cuda headers are used (not ATen/cuda/CUDAContext.h) so the build does not need the
// cuBLAS/cuSPARSE development headers, which a Jetson's CUDA install may lack.
#include "sparse_block.h"

#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <string>
#include <vector>

namespace
{

using sparse_pose_ros::SparseBlockShape;
using sparse_pose_ros::SparseDType;

void checkCuda(cudaError_t status, char const* what)
{
    TORCH_CHECK(status == cudaSuccess, what, " failed: ", cudaGetErrorString(status));
}

SparseDType dtypeOf(torch::Tensor const& t)
{
    if (t.scalar_type() == torch::kFloat32)
    {
        return SparseDType::kFLOAT32;
    }
    TORCH_CHECK(t.scalar_type() == torch::kFloat16, "x must be float32 or float16, got ", t.scalar_type());
    return SparseDType::kFLOAT16;
}

//! Weights are always fp32 contiguous on the device of x (see sparse_block.h).
torch::Tensor weight(torch::Tensor const& w, torch::Tensor const& x, char const* name)
{
    TORCH_CHECK(w.defined(), name, " is undefined");
    return w.to(x.device(), torch::kFloat32).contiguous();
}

SparseBlockShape shapeOf(torch::Tensor const& x, torch::Tensor const& mask, int64_t hidden, int64_t out,
    int64_t stride, bool hasExpand, bool residual, int64_t padBefore)
{
    TORCH_CHECK(x.is_cuda(), "x must be a CUDA tensor");
    TORCH_CHECK(x.dim() == 4, "x must be (B, C, H, W), got ", x.sizes());
    SparseBlockShape s;
    s.batch = static_cast<int32_t>(x.size(0));
    s.inChannels = static_cast<int32_t>(x.size(1));
    s.inHeight = static_cast<int32_t>(x.size(2));
    s.inWidth = static_cast<int32_t>(x.size(3));
    s.hiddenChannels = static_cast<int32_t>(hidden);
    s.outChannels = static_cast<int32_t>(out);
    s.stride = static_cast<int32_t>(stride);
    s.padBefore = static_cast<int32_t>(padBefore);
    s.hasExpand = hasExpand;
    s.residual = residual;
    char const* error = sparse_pose_ros::sparseBlockShapeError(s);
    TORCH_CHECK(error == nullptr, "invalid sparse block: ", error == nullptr ? "" : error);
    int64_t const outH = sparse_pose_ros::sparseBlockOutExtent(s.inHeight, s.stride);
    int64_t const outW = sparse_pose_ros::sparseBlockOutExtent(s.inWidth, s.stride);
    TORCH_CHECK(mask.is_cuda() && mask.device() == x.device(), "mask must be on the device of x");
    TORCH_CHECK(mask.scalar_type() == x.scalar_type(), "mask must have the dtype of x");
    TORCH_CHECK(mask.dim() == 4 && mask.size(0) == s.batch && mask.size(1) == 1 && mask.size(2) == outH
            && mask.size(3) == outW,
        "mask must be (", s.batch, ", 1, ", outH, ", ", outW, "), got ", mask.sizes());
    return s;
}

torch::Tensor sparseInvertedResidual(torch::Tensor x, torch::Tensor mask, torch::Tensor wExpand,
    torch::Tensor bExpand, torch::Tensor wDepthwise, torch::Tensor bDepthwise, torch::Tensor wProject,
    torch::Tensor bProject, int64_t stride, bool hasExpand, bool residual, int64_t padBefore)
{
    TORCH_CHECK(wDepthwise.dim() == 2 && wDepthwise.size(1) == 9, "w_dw must be (Ce, 9), got ", wDepthwise.sizes());
    TORCH_CHECK(wProject.dim() == 2 && wProject.size(1) == wDepthwise.size(0), "w_proj must be (Co, Ce), got ",
        wProject.sizes());
    SparseBlockShape const s
        = shapeOf(x, mask, wDepthwise.size(0), wProject.size(0), stride, hasExpand, residual, padBefore);
    if (hasExpand)
    {
        TORCH_CHECK(wExpand.dim() == 2 && wExpand.size(0) == s.hiddenChannels && wExpand.size(1) == s.inChannels,
            "w_expand must be (", s.hiddenChannels, ", ", s.inChannels, "), got ", wExpand.sizes());
        TORCH_CHECK(bExpand.numel() == s.hiddenChannels, "b_expand must have Ce elements");
    }
    TORCH_CHECK(bDepthwise.numel() == s.hiddenChannels, "b_dw must have Ce elements");
    TORCH_CHECK(bProject.numel() == s.outChannels, "b_proj must have Co elements");

    c10::cuda::CUDAGuard const guard(x.device());
    torch::Tensor const xc = x.contiguous();
    torch::Tensor const mc = mask.contiguous();
    torch::Tensor const we = weight(wExpand, x, "w_expand");
    torch::Tensor const be = weight(bExpand, x, "b_expand");
    torch::Tensor const wd = weight(wDepthwise, x, "w_dw");
    torch::Tensor const bd = weight(bDepthwise, x, "b_dw");
    torch::Tensor const wp = weight(wProject, x, "w_proj");
    torch::Tensor const bp = weight(bProject, x, "b_proj");

    int64_t const outH = sparse_pose_ros::sparseBlockOutExtent(s.inHeight, s.stride);
    int64_t const outW = sparse_pose_ros::sparseBlockOutExtent(s.inWidth, s.stride);
    torch::Tensor y = torch::empty({s.batch, s.outChannels, outH, outW}, x.options());
    size_t const wsBytes = sparse_pose_ros::sparseBlockWorkspaceSize(s);
    torch::Tensor workspace
        = torch::empty({static_cast<int64_t>(wsBytes)}, x.options().dtype(torch::kUInt8));

    sparse_pose_ros::SparseBlockTensors t;
    t.x = xc.data_ptr();
    t.mask = mc.data_ptr();
    t.wExpand = we.data_ptr<float>();
    t.bExpand = be.data_ptr<float>();
    t.wDepthwise = wd.data_ptr<float>();
    t.bDepthwise = bd.data_ptr<float>();
    t.wProject = wp.data_ptr<float>();
    t.bProject = bp.data_ptr<float>();
    t.y = y.data_ptr();
    checkCuda(sparse_pose_ros::launchSparseInvertedResidual(
                  s, dtypeOf(x), t, workspace.data_ptr(), wsBytes, c10::cuda::getCurrentCUDAStream().stream()),
        "launchSparseInvertedResidual");
    return y;
}

//! (active_idx, dilated_idx, row_map, counts) as the kernels leave them; the list tails past the
//! counts are unspecified.
std::vector<torch::Tensor> indexLists(
    torch::Tensor mask, int64_t inHeight, int64_t inWidth, int64_t stride, int64_t padBefore)
{
    TORCH_CHECK(mask.is_cuda() && mask.dim() == 4 && mask.size(1) == 1, "mask must be a CUDA (B, 1, Ho, Wo) tensor");
    SparseBlockShape s;
    s.batch = static_cast<int32_t>(mask.size(0));
    s.inChannels = s.hiddenChannels = s.outChannels = 1;
    s.inHeight = static_cast<int32_t>(inHeight);
    s.inWidth = static_cast<int32_t>(inWidth);
    s.stride = static_cast<int32_t>(stride);
    s.padBefore = static_cast<int32_t>(padBefore);
    s.hasExpand = false;
    char const* error = sparse_pose_ros::sparseBlockShapeError(s);
    TORCH_CHECK(error == nullptr, "invalid index-list shape: ", error == nullptr ? "" : error);
    TORCH_CHECK(mask.size(2) == sparse_pose_ros::sparseBlockOutExtent(s.inHeight, s.stride)
            && mask.size(3) == sparse_pose_ros::sparseBlockOutExtent(s.inWidth, s.stride),
        "mask does not match the input size at this stride");

    c10::cuda::CUDAGuard const guard(mask.device());
    torch::Tensor const mc = mask.contiguous();
    auto const intOptions = mask.options().dtype(torch::kInt32);
    torch::Tensor active = torch::empty({mask.numel()}, intOptions);
    torch::Tensor dilated = torch::empty({int64_t{s.batch} * s.inHeight * s.inWidth}, intOptions);
    torch::Tensor rowMap = torch::empty_like(dilated);
    torch::Tensor counts = torch::empty({2}, intOptions);
    size_t const scratchBytes = sparse_pose_ros::sparseIndexScratchSize(s);
    torch::Tensor scratch
        = torch::empty({static_cast<int64_t>(scratchBytes)}, mask.options().dtype(torch::kUInt8));
    checkCuda(sparse_pose_ros::launchSparseIndexLists(s, dtypeOf(mask), mc.data_ptr(), active.data_ptr<int32_t>(),
                  dilated.data_ptr<int32_t>(), rowMap.data_ptr<int32_t>(), counts.data_ptr<int32_t>(),
                  scratch.data_ptr(), scratchBytes, c10::cuda::getCurrentCUDAStream().stream()),
        "launchSparseIndexLists");
    return {active, dilated, rowMap, counts};
}

} // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m)
{
    m.doc() = "sparse_pose_ros gather -> compute -> scatter inverted-residual kernels";
    m.def("sparse_inverted_residual", &sparseInvertedResidual, "Sparse inverted-residual block (BN folded)",
        pybind11::arg("x"), pybind11::arg("mask"), pybind11::arg("w_expand"), pybind11::arg("b_expand"),
        pybind11::arg("w_dw"), pybind11::arg("b_dw"), pybind11::arg("w_proj"), pybind11::arg("b_proj"),
        pybind11::arg("stride"), pybind11::arg("has_expand"), pybind11::arg("residual"),
        pybind11::arg("pad_before") = 1);
    m.def("index_lists", &indexLists, "Active / dilated index lists of a mask", pybind11::arg("mask"),
        pybind11::arg("in_height"), pybind11::arg("in_width"), pybind11::arg("stride"),
        pybind11::arg("pad_before") = 1);
}

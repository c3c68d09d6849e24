//! Helpers shared by the test modules.

use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Writes a safetensors file of named tensors: (name, dtype, shape, values
/// as f32, converted to the dtype). F32, F64, F16 and BF16.
pub fn write_safetensors(path: &Path, tensors: &[(String, Dtype, Vec<usize>, Vec<f32>)]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let data: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, s, v)| {
            let bytes: Vec<u8> = match d {
                Dtype::F32 => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
                Dtype::F64 => v.iter().flat_map(|x| (*x as f64).to_le_bytes()).collect(),
                Dtype::F16 => v
                    .iter()
                    .flat_map(|x| half::f16::from_f32(*x).to_le_bytes())
                    .collect(),
                Dtype::BF16 => v
                    .iter()
                    .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
                    .collect(),
                other => panic!("write_safetensors: {other:?} is not supported"),
            };
            (n.clone(), *d, s.clone(), bytes)
        })
        .collect();
    let views: HashMap<String, TensorView> = data
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, path).unwrap();
}

/// `p` under the asset cache of `scripts/fetch-assets.sh`, or a panic that
/// says how to get it (for the `#[ignore]`d asset tests).
pub fn asset(p: &str) -> PathBuf {
    let path = aimcsim::config::assets_dir().join(p);
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch-assets.sh first",
        path.display()
    );
    path
}
